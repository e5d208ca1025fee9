"""wabahooks, the queue side: RQ workers that run handlers on received events."""
