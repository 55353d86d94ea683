"""Learned post-processing of SIRT images (DeepLoco-style), optional.

A small convolutional network (`build_network`) maps a 2D SIRT image to a
per-pixel atom probability and sub-pixel offsets (`decode_maps` turns them
into atoms). It is trained (`train`, or ``python -m odl_atoms.learned
train``) on random crystals with defects (`random_crystal`) simulated at
the target problem's angles, atom width and detector and reconstructed
with `odl_atoms.SIRT`, i.e. on the images it will see.

- `LearnedPicker`: `odl_atoms.AtomPicker`'s interface, ``pick(image,
  space)``, so ``SIRT(picker=LearnedPicker())`` is SIRT + learned
  picking;
- `LearnedSIRT` / `learned_sirt`: that pipeline as a `Solver`
  (``odl-atoms reconstruct --solver sirt+learned``).

PyTorch is needed only to build, train or run the network: this package
imports it on first use, never at import time (``pip install
"odl_atoms[learn]"``).

Default model: shipped, not trained on first use. The built-in example
(``odl-atoms demo``: vacancy phantom, 0/45/90 degrees, sigma 0.43 A, 96
detector cells) has a trained model in the package
(``odl_atoms/data/learned_picker_0-45-90.pt``, `default_model_path`;
48 131 parameters stored as float16, about 100 KB), because it is small
while training it costs about five minutes of CPU: a first use that trains
would stall the demo, the tests and every CI run, and a cache in the
user's home would make results depend on what an earlier run left there
(and on the torch version that trained it). It was made with ::

    python -m odl_atoms.learned train --angles 0,45,90 --workers 2 \
        -o odl_atoms/data/learned_picker_0-45-90.pt

Other problems (angles, sigma, detector, box) need their own model:
``odl_atoms.learned.train(angles=..., sigma=..., output='model.pt')``.
"""

from odl_atoms.learned import data, model, network, picker, training
from odl_atoms.learned.data import *  # noqa: F401,F403
from odl_atoms.learned.model import *  # noqa: F401,F403
from odl_atoms.learned.network import *  # noqa: F401,F403
from odl_atoms.learned.picker import *  # noqa: F401,F403
from odl_atoms.learned.training import *  # noqa: F401,F403

__all__ = (data.__all__ + model.__all__ + network.__all__ + picker.__all__
           + training.__all__)
