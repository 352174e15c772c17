"""What makes the course run but is not taught: one concern per module, none of them imports ``helpers``."""
