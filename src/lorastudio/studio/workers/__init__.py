from lorastudio.studio.workers.worker import STOP_SECONDS, Worker, consume, stop_on_signals, watch_parent

__all__ = ["STOP_SECONDS", "Worker", "consume", "stop_on_signals", "watch_parent"]
