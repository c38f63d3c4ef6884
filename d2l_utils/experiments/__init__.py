"""The deep dives' tools (notebooks 6-9 and B): not needed to follow the chapter.

``fast_batch_norm`` (a hand-written backward, for speed), ``cross_device_batch_norm``
(statistics over a batch split across devices), ``normalization`` (layer, group and instance
norm), ``folding`` (BN folded into the layer before it), ``probes`` (what layers see and pass
back), ``sweeps`` (many short trainings compared), ``landscape`` (the loss along the gradient).

Learners import these names from ``d2l_utils`` itself, which loads a module here only when one
of its names is first used. Modules here import the book's helpers (``d2l_utils/*.py``) and
``support``; nothing outside this folder but ``d2l_utils/__init__.py`` imports them.
"""
