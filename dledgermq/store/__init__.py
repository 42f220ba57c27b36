"""The storage engine: plain classes over files, one job per module.

`record` encodes CommitLog records; `commitlog` appends, recovers, truncates and retires
segments (single writer), `reader` and `syncer` are the read-only and fsync views other
threads own; `consume_queue` and `index_file` are the derived per-queue and per-key indexes;
`checkpoint` and `fileio` make small files durable. Nothing here starts threads, reads the
clock or imports pykka/asyncio: time comes in as arguments, disk errors propagate.
"""
