"""electrode-twin application core: scenarios, Monte Carlo orchestration, store, segment tracking, update loop,
advisor, scheduler, command line and web page. Talks to the outside world only through ``connectors``."""

__version__ = "0.1.0"
