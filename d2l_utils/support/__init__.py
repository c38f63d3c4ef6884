"""For maintainers, not learners: what the book's helpers stand on.

``environment`` (the version check ``import d2l_utils`` runs first), ``env_report``
(``python -m d2l_utils``), ``errors`` (one short line from a long error), ``fashion_mnist_files``
(finding, verifying and downloading the data files), ``progress`` (the one-line progress
display), ``validation`` (the one rule for "a positive integer"). Modules here never import
``checks`` or ``experiments``; only ``env_report`` reads a book's helper (``device``).
"""
