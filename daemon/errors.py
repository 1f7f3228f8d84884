"""The exceptions a user can meet; each carries one line that names the problem."""


class UserError(Exception):
    """A mistake the user can fix (missing file, bad CSV, invalid bundle): exit 1."""


class ConfigError(UserError):
    """Invalid configuration: exit 78 (EX_CONFIG), so systemd does not restart in a loop."""
