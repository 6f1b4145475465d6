"""Extension singletons, created bare and bound to an app in `create_app`."""

from flask_sock import Sock

sock = Sock()
