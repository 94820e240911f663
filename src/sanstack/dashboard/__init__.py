"""The cluster's web dashboard (``sanstack dashboard``): one aiohttp process over the nodes'
control sockets; the page is plain HTML, CSS and JavaScript in ``static/``."""
