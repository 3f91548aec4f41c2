"""``vrm ui``: the customer's relationships at a glance, in a local web page.

A small aiohttp application with server-rendered Jinja2 templates over the same
:class:`~vrmproto.client.CustomerNode` the command line uses: the relationship cards with their
⊂ ⊃ mark, a relationship's decoded history and its actions, the change of address and the
intentcast followed live (server-sent events), connecting to a vendor. No build step, nothing
fetched from the internet.

Safety (:mod:`vrmproto.ui._guard`): it listens on 127.0.0.1 only, every URL carries a token made
for this launch, and every request is checked for ``Host`` and, when it changes anything, for
its origin.
"""

from vrmproto.ui._app import Ui, make_app
from vrmproto.ui._guard import Guard, new_token
from vrmproto.ui._server import HOST, UiServer

__all__ = ["HOST", "Guard", "Ui", "UiServer", "make_app", "new_token"]
