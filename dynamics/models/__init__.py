"""One subpackage per paper's system; the registry maps the names used on the command line to them."""
