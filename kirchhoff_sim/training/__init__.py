"""Training: data sets, mini-batching and numpy optimisers for KirchhoffNets.

:mod:`.datasets` loads the benchmark sets (moons, circles, digits) or a user's ``.npz`` /
``.csv`` file into a :class:`~.datasets.Dataset` with a stratified test split;
:mod:`.optim` holds Adam / AdamW and the per-epoch learning-rate schedules.
"""
