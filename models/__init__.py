"""The paper's networks, by name, and their checkpoints.

``build_model("resnet56")`` builds a registered architecture (``MODEL_NAMES``)
and ``build_model("mypkg.mynet:build")`` a user's own; ``load_checkpoint``
fills it with trained weights from a reference ``.t7`` file, a plain
state_dict or a file written by ``save_checkpoint``. Every mistake a user can
make here raises ``ModelError`` with a message that says what to do; so does
whatever fails in a user's own ``package.module:factory`` (``user_code``).

This package knows nothing of the landscape engine and never imports it.
"""

from .checkpoint import checkpoint_sha256, load_checkpoint, read_state_dict, save_atomic, save_checkpoint
from .errors import ModelError
from .registry import MODEL_NAMES, build_model
from .user_code import import_factory, user_code

__all__ = ["MODEL_NAMES", "ModelError", "build_model", "checkpoint_sha256", "import_factory", "load_checkpoint",
           "read_state_dict", "save_atomic", "save_checkpoint", "user_code"]
