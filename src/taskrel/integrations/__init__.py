"""Doors for training frameworks users bring: Lightning (`taskrel.integrations.lightning`) and torchjd
(`taskrel.integrations.torchjd`).

Each module translates its framework into taskrel's callback contract (`taskrel.train.callbacks`) or its
`Problem` protocol, and needs its optional extra: ``pip install 'taskrel[lightning]'`` or
``pip install 'taskrel[torchjd]'``. Nothing is imported here, so taskrel itself does not need either.
"""
