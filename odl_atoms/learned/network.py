"""The convolutional network of the learned picker (built on demand).

torch is imported inside `build_network`, never at module import, so that
``import odl_atoms`` works without the ``learn`` extra.

Architecture (`build_network`): a small U-Net, fully convolutional, so any
image size works (inputs are zero-padded to a multiple of 4 pixels):

======================  =========================================  ===========
level                   layers                                     resolution
======================  =========================================  ===========
encoder 1               2 x (3x3 conv, ReLU), ``w`` channels       1
encoder 2               max-pool, 2 x (3x3 conv, ReLU), ``2w``     1/2
bottleneck              max-pool, 3x3 conv, 3x3 convs dilated 2,   1/4
                        4 and 8, ReLU, ``4w`` channels
decoder 2               upsample, concat encoder 2, 2 x 3x3 conv   1/2
decoder 1               upsample, concat encoder 1, 2 x 3x3 conv   1
head                    1x1 conv to 3 channels                     1
======================  =========================================  ===========

The head's channels are the logit of p(atom in the pixel) and the offsets
along the two image axes (pixels). With the dilated bottleneck every
output pixel sees about 150 pixels across, more than the default problem's
68-pixel image (17 lattice spacings): the streaks and ghost peaks of
few-angle SIRT come from atoms far along the rays, so the decision at a
pixel needs that context.
"""

__all__ = ('build_network', 'count_parameters')


def build_network(width=8):
    """Return the U-Net (a ``torch.nn.Module``), randomly initialised.

    Parameters
    ----------
    width : positive int, optional
        Channels of the first level (the others have 2 and 4 times as many).
        The default, 8, has 48 131 parameters (190 KB in float32, 96 KB
        as the float16 that `LearnedModel.save` writes); 12 has 108 051.

    Returns
    -------
    net : torch.nn.Module
        Maps a ``(batch, 1, n0, n1)`` float tensor to ``(batch, 3, n0, n1)``.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    w = int(width)
    if w < 1:
        raise ValueError(f'`width` must be a positive integer, got {width!r}')

    def block(cin, cout, dilations=(1, 1)):
        layers = []
        for k, d in enumerate(dilations):
            layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, padding=d,
                                 dilation=d), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    class PickerUNet(nn.Module):

        def __init__(self):
            super().__init__()
            self.enc1 = block(1, w)
            self.enc2 = block(w, 2 * w)
            self.mid = block(2 * w, 4 * w, dilations=(1, 2, 4, 8))
            self.dec2 = block(6 * w, 2 * w)
            self.dec1 = block(3 * w, w)
            self.head = nn.Conv2d(w, 3, 1)

        def forward(self, x):
            n0, n1 = x.shape[-2:]
            # Zero padding (the density outside the box) to whole pools.
            p0, p1 = (-n0) % 4, (-n1) % 4
            if p0 or p1:
                x = F.pad(x, (0, p1, 0, p0))
            e1 = self.enc1(x)
            e2 = self.enc2(F.max_pool2d(e1, 2))
            m = self.mid(F.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0),
                                      e2], 1))
            d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0),
                                      e1], 1))
            return self.head(d1)[..., :n0, :n1]

    return PickerUNet()


def count_parameters(net):
    """Return the number of trainable parameters of a torch module."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
