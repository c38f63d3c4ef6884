"""One short line from an error message, for messages a learner reads.

MXNet's errors carry a C++ traceback: ``Traceback (most recent call last):`` and ``File ...``
lines first, the message last (``MXNetError: Operator _zeros is not implemented for GPU.``),
sometimes after a ``[09:24:46] ../src/file.h:93:`` log prefix. Other errors put their message
first and details after it.
"""
__all__ = ['short_message']

_MXNET_PREFIX = 'MXNetError:'


def short_message(error, limit=300):
    """The line of ``error`` (an exception or a text) that says what went wrong, shortened.

    For MXNet's format the last line starting with ``MXNetError:`` (without that prefix or a
    ``[hh:mm:ss] file:line:`` log prefix); for any other text its first non-empty line. A final
    '.' is dropped (the caller ends the sentence); at most ``limit`` characters (a longer line
    ends in '...'). An empty message gives the exception's type name ('' for an empty text).
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    mxnet_lines = [line for line in lines if line.startswith(_MXNET_PREFIX)]
    if mxnet_lines:
        text = mxnet_lines[-1][len(_MXNET_PREFIX):].strip()
    elif lines:
        text = lines[0]
    else:
        return type(error).__name__ if isinstance(error, BaseException) else ''
    if text.startswith('[') and '] ' in text:   # MXNet's log prefix: [09:24:46] file.h:93: ...
        text = text.split('] ', 1)[1]
    text = text.rstrip('.')
    return text if len(text) <= limit else text[:limit - 3] + '...'
