"""Why add-to-bot refuses a project."""


class ProjectError(Exception):
    """The project is not one add-to-bot understands; nothing was changed."""
