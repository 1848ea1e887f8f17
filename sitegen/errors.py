"""The one exception type whose message the command line prints as is."""


class SitegenError(Exception):
    """A problem with the user's input: config, files, model or layer names."""
