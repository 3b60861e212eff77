"""The training loss, in a module of its own: the step trains with it, the memory check counts what it keeps.

    >>> import torch
    >>> from thinker.tasks import PAD
    >>> logits = torch.zeros(1, 2, 4)  # two answer slots, four ids: every id equally likely
    >>> round(masked_loss(logits, torch.tensor([[3, PAD]])).item(), 4)  # the PAD slot does not count
    1.3863
"""

import torch
import torch.nn.functional as F

from thinker.tasks import PAD


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over answer slots only (targets are PAD elsewhere); no host sync."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD)
