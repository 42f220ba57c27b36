"""dledgermq: a RocketMQ-style message queue whose CommitLog is replicated by Raft."""

__version__ = "0.1.0"
