"""Does not compile: the server must refuse to start (or to reload) with it."""


def app(environ, start_response)
    return []
