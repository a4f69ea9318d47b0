"""smtptop: which LAN host talks SMTP to whom, and what the servers answered."""

__version__ = "0.1.0"
