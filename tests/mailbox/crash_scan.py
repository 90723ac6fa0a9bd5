"""`bounce-service scan` that dies by SIGKILL where a crash hurts most: the batch is committed, the mailbox
has not been told to remove it yet. Run as a script by the tests."""

import os
import signal
import sys

from bounce_service import cli
from bounce_service.mailbox.imap import ImapClient
from bounce_service.mailbox.pop3 import Pop3Client


def die(*_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


Pop3Client.remove = ImapClient.remove = die  # type: ignore[method-assign]
sys.exit(cli.main(sys.argv[1:]))
