"""Hard / soft classification of one bounced recipient.

"Hard" means the address itself is dead: unknown user or mailbox, unknown domain, moved, a host
that accepts no mail at all. Everything else (full mailbox, policy, spam, reputation, rate limits,
authentication, timeouts) is "soft" even with a permanent 5.x.x status, because the address may
well work for the next message. Phrases are checked before status codes because servers routinely
send 5.1.1 or 5.0.0 with a text that says something else.

The patterns are written in lower case and matched against lower-cased text: with re.IGNORECASE these
long alternations run four times slower, and they are most of the parser's own time.
"""

from __future__ import annotations

import re

from .dsn import find_status

# Soft reasons that servers phrase with words the hard list also uses ("recipient", "address",
# "rejected"), so they are tried before it.
_SOFT_FIRST = re.compile(
    r"""
    # mailbox full / quota
      mailbox\s+(?:is\s+)?full | mailbox\s+quota | quota\s+exceeded | over\s+(?:the\s+)?(?:allowed\s+)?quota
    | exceeds?\s+(?:the\s+)?(?:allowed|storage|size|quota)
    | exceeded\s+(?:storage|its|the\s+(?:storage|size)|quota)
    | (?:disk|storage|mail)\s+quota | insufficient\s+(?:disk|storage)\s+space | not\s+enough\s+(?:storage|space)
    | mailbox\s+(?:size|has\s+exceeded|exceeded) | full\s+mailbox | mailfolder\s+is\s+full | too\s+much\s+mail\s+data
    | (?:user|account|recipient)\s+(?:is\s+)?over\s+quota | user's\s+space | boite\s+du\s+destinataire\s+pleine
    | shutoffquota
    # suspended / disabled / frozen accounts: the address exists
    | suspended | disabled | deactivated | is\s+frozen | temporar(?:il)?y?\s+locked | account\s+(?:is\s+)?locked
    | inactive\s+user | temporarily\s+inactive | archivee
    # spam, content, virus, policy, reputation, blocklists
    | spam | \bube\b | virus | malware | content\s+(?:rejected|presents) | message\s+content
    | polic(?:y|ies) | blacklist | blocklist | black\s+list | \bblocked\b | \bbloquee\b | \brbl\b | dnsbl | spamhaus
    | reputation | user\s+complaints | unexpected\s+volume | rfc\s*5322
    | multiple\s+(?:\S+\s+)?addresses\s+in\s+from | 8-bit\s+data | protocol\s+violation
    # authentication: DMARC / SPF / DKIM / PTR / relaying / sender checks
    | dmarc | \bspf\b | dkim | unauthenticated | authentication | not\s+authenticated | reverse\s+dns | \bptr\b
    | ip\s+name\s+lookup | mismatches\s+client\s+ip | may\s+not\s+be\s+mail\s+exchanger
    | relay(?:ing)?\s+(?:access\s+)?denied
    | relaying\s+(?:not\s+)?(?:allowed|permitted|denied) | not\s+permitted\s+to\s+relay | unable\s+to\s+relay
    | identities\s+failed | not\s+verified | sender\s+(?:address\s+)?(?:was\s+)?(?:rejected|domain|verify)
    | domain\s+of\s+sender | my\s+name\s+was\s+rejected | greeting\s+failed
    # rate limits and size
    | rate\s+(?:limit|that) | too\s+many | frequency\s+limited
    | message\s+(?:is\s+)?too\s+(?:big|large) | size\s+exceeds | length\s+exceeds | exceeds\s+limit
    # the sender, not the recipient, was refused
    | (?:after|in\s+reply\s+to)\s+mail\s+from
    # au (KDDI) answers "550 : User unknown" (no address) when the recipient's domain filter refuses us
    | \b550\s*:\s*(?::\s*)?user\s+unknown
    # mailing-list permission (Google Groups)
    | permission\s+to\s+post | not\s+have\s+permission
    """,
    re.X,
)

# Transient trouble: only decides when no dead-address phrase is present.
_SOFT_LATE = re.compile(
    r"""
      try\s+(?:again\s+)?later | temporar | \bdeferred\b | timed?\s*out | connection\s+(?:refused|reset)
    | no\s+route\s+to\s+host | too\s+many\s+hops | message\s+expired | refused\s+to\s+talk
    | service\s+(?:refused|unavailable|not\s+available|currently\s+unavailable) | queue\s+file
    | transaction\s+failed | disk\s+space | system\s+config | retry\s+timeout | name\s+service\s+error
    | establish\s+an\s+smtp\s+connection | in\s+the\s+queue\s+too\s+long | \bexpired\b
    """,
    re.X,
)

# The address itself is dead.
_HARD = re.compile(
    r"""
    # unknown user / mailbox
      (?:user|recipient|mailbox|address|addressee|account|destinat\w*)\s+(?:name\s+)?(?:is\s+)?
      (?:unknown|not\s+(?:found|known|exist|recognized|valid|listed))
    | (?:unknown|invalid|bad|non-?existent|no\s+such)\s+(?:local\s+)?
      (?:user|recipient|mailbox|address|addressee|account|person|e-?mail\s+address|destination\s+mailbox)
    | (?:user|recipient|mailbox|address|account|email\s+account|e-?mail\s+address)\s+
      (?:that\s+you\s+tried\s+to\s+reach\s+)?(?:does\s+not|doesn't|did\s+not)\s+exist
    | does\s+not\s+exist | doesn't\s+exist | not\s+exist | no\s+(?:such\s+)?mailbox
    | mailbox\s+(?:not\s+found|unavailable|invalid|not\s+present)
    | address\s+rejected | recipnotfound | recipientnotfound | resolver\.adr
    | doesn't\s+have\s+a\s+\S+\s+account | no\s+account | not\s+our\s+customer
    | no\s+longer\s+(?:on\s+server|valid|available|in\s+use|active) | inactive\s+e-?mail\s+address
    | unknown\s+user | user\s+unknown | (?:destinataire|utilisateur)\s+(?:invalide|inconnu)
    | not\s+a\s+valid\s+(?:user|recipient|mailbox) | is\s+not\s+a\s+known\s+user
    | there\s+is\s+no\s+one\s+at\s+this\s+address | unrouteable\s+(?:address|mail\s+domain) | badrcptto
    # Lotus Notes / Domino: "... not listed in Domino Directory", "... in public Name & Address Book"
    | not\s+listed\s+in\s+(?:the\s+)?(?:domino|public\s+name|[\w&\s]{0,20}address\s+book|directory)
    | no\s+valid\s+recipients | does\s+not\s+like\s+recipient | no\s+longer\s+accepts\s+mail
    | not\s+known\s+at\s+this\s+site | recipient\s+is\s+not\s+local | no\s+mail\s*box\s+available
    | no\s+such\s+mail\s*drop | missing\s+home\s+directory | unknown\s+virtual\s+user | can't\s+accept\s+user
    | not\s+(?:found|present)\s+in\s+(?:the\s+)?(?:directory|ldap) | validrcptto | badrecipientto | user\s+not\s+active
    | no\s+existe | nessun\s+utente | adresse\s+nicht\s+gefunden | existiert\s+nicht | n'existe\s+pas
    | (?:address|recipient|mailbox|user)[^.\n]{0,40}(?:couldn't|could\s+not|cannot|can't)\s+be\s+found
    # unknown domain / host
    | host\s+(?:or\s+domain\s+name\s+)?(?:unknown|not\s+found) | host\s+\S+\s+not\s+found
    | unknown\s+(?:host|domain) | no\s+such\s+domain | domain\s+(?:name\s+)?(?:not\s+found|does\s+not\s+exist|unknown)
    | nxdomain | name\s+or\s+service\s+not\s+known | no\s+mx\s+record
    | mail\s+domain\s+mentioned\s+in\s+email\s+address\s+is\s+unknown
    | (?:couldn't|could\s+not|cannot|can't)\s+find\s+(?:a\s+mail\s+exchanger|any\s+host)
    | mx\s+records\s+point\s+to\s+non-existent\s+hosts | host\s+address\s+lookups\s+failed\s+permanently
    | mx\s+or\s+srv\s+record\s+indicated\s+no\s+smtp\s+service
    # Japanese Notes/Domino: "not found in the directory" / "not in the directory list" / "does not exist"
    | 見つかりません | リストにありません | 存在しません
    # moved / accepts no mail at all
    | has\s+been\s+replaced\s+by | has\s+moved | \bnull\s+mx\b | does\s+not\s+accept\s+mail
    | doesn't\s+receive\s+email | not\s+accepting\s+(?:network\s+)?messages
    """,
    re.X,
)

# Dead-address status codes (RFC 3463 X.1.x, RFC 7505 null MX): bad mailbox, bad system, bad syntax,
# moved, null MX, not accepting. With one of these the "unknown user" words are the server's own verdict.
_HARD_STATUS = frozenset({"5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.3.2"})
_REPLY_4XX = re.compile(r"(?:^|[\s;:(\[])4[0-9]{2}[\s-]")
# The SMTP command a rejection answered, as MTAs word it: Postfix "(in reply to RCPT TO command)", Exim
# "after RCPT TO:<...>" / "after end of data", qmail "does not like recipient", Postfix's RCPT restriction
# "Recipient address rejected", a transcript's ">>> DATA" line followed by the server's "<<<" answer.
_AT_RCPT = re.compile(
    r"(?:in\s+reply\s+to|after)\s+rcpt\s+to\b|^>>>\s*rcpt\s+to\b.*\n<<<|does\s+not\s+like\s+recipient"
    r"|recipient\s+address\s+rejected",
    re.M,
)
_AT_DATA = re.compile(r"(?:in\s+reply\s+to|after)\s+(?:end\s+of\s+)?data\b|^>>>\s*data\s*\n<<<", re.M)
# The bare wording that content filters reuse, and the status classes that are not the address's own.
_GENERIC_UNKNOWN = re.compile(r"user\s+unknown|unknown\s+user")
_OTHER_CLASSES = ("5.3.", "5.6.", "5.7.")


def classify(status: str, texts: list[str], delayed: bool = False) -> str:
    """'hard' or 'soft' for one recipient.

    ``texts`` go from most to least specific (the DSN Diagnostic-Code, the recipient's paragraph,
    the whole report); the first one with a recognised phrase decides, the status code otherwise.
    """
    texts = [t.lower() for t in texts if t]
    status = status or next((s for s in map(find_status, texts) if s), "")
    if delayed or status.startswith("4.") or (not status and texts and _REPLY_4XX.search(texts[0])):
        return "soft"
    for text in texts:
        verdict = _phrase_verdict(text)
        if verdict == "hard":
            return _dead_address_verdict(status, texts)
        if verdict:
            return verdict
    return "hard" if status in _HARD_STATUS else "soft"


def _phrase_verdict(text: str) -> str | None:
    if _SOFT_FIRST.search(text):
        return "soft"
    if _HARD.search(text):
        return "hard"
    if _SOFT_LATE.search(text):
        return "soft"
    return None


def _dead_address_verdict(status: str, texts: list[str]) -> str:
    """A dead-address wording proves a dead address when the status code says so too, or when the
    server said it to RCPT TO, the command that names the recipient. With an X.2.x status (RFC 3463: the
    mailbox exists, but is disabled, full or too small) and no sign that RCPT TO was refused, the status
    code is believed. The bare "user unknown" is also what content filters answer: said to DATA
    (Japanese carriers answer it to mail their users' filters refuse), or with a status of another
    class than the address's (X.3 mail system, X.6 content, X.7 policy), it is soft; a wording that
    names the account's absence ("doesn't have an account", "invalid recipient") is meant even at DATA
    (Yahoo refuses unknown users there)."""
    specific = find_status(texts[0]) if texts else ""
    if status.endswith(".0.0") and specific and not specific.endswith(".0.0"):
        status = specific  # X.0.0 is RFC 3463's "undefined": the diagnostic's own code says more
    if status in _HARD_STATUS:
        return "hard"
    context = "\n".join(texts[:2])  # the recipient's own lines, not the other recipients' in the report
    if _AT_RCPT.search(context):
        return "hard"
    generic_only = _HARD.search(_GENERIC_UNKNOWN.sub(" ", context)) is None
    if status.startswith("5.2.") or generic_only and (_AT_DATA.search(context) or status[:4] in _OTHER_CLASSES):
        return "soft"
    return "hard"
