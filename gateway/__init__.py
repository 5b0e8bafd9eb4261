"""python -m gateway: the websocket server and the web terminal page."""
