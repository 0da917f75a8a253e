"""Legal Verilog identifiers from arbitrary user strings.

Layer names come from PyTorch (``features.conv1``), from users, or from a file someone else
wrote (``fc.1; $finish``). Before any of them becomes a module, port or file name it goes
through :func:`verilog_identifier`, which returns a plain (never escaped) identifier that
every Verilog and SystemVerilog tool accepts, that no tool reads as a keyword or system task,
and that is still readable: ``features.conv1`` becomes ``features_conv1``.
"""

import hashlib
import re
import unicodedata

__all__ = [
    "MAX_IDENTIFIER_LENGTH",
    "RESERVED_WORDS",
    "VERILOG_KEYWORDS",
    "is_verilog_identifier",
    "verilog_identifier",
]

#: Identifiers longer than this are truncated (with a hash suffix). IEEE 1800 §5.6 lets a
#: tool limit identifiers to 1024 characters; 64 keeps file names and waveforms readable.
MAX_IDENTIFIER_LENGTH = 64

_KEYWORD_TEXT = """
    accept_on alias always always_comb always_ff always_latch and assert assign assume
    automatic before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez
    cell chandle checker class clocking cmos config const constraint context continue cover
    covergroup coverpoint cross deassign default defparam design disable dist do edge else end
    endcase endchecker endclass endclocking endconfig endfunction endgenerate endgroup
    endinterface endmodule endpackage endprimitive endprogram endproperty endspecify
    endsequence endtable endtask enum event eventually expect export extends extern final
    first_match for force foreach forever fork forkjoin function generate genvar global highz0
    highz1 if iff ifnone ignore_bins illegal_bins implements implies import incdir include
    initial inout input inside instance int integer interconnect interface intersect join
    join_any join_none large let liblist library local localparam logic longint macromodule
    matches medium modport module nand negedge nettype new nexttime nmos nor noshowcancelled
    not notif0 notif1 null or output package packed parameter pmos posedge primitive priority
    program property protected pull0 pull1 pulldown pullup pulsestyle_ondetect
    pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref reg
    reject_on release repeat restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always
    s_eventually s_nexttime s_until s_until_with scalared sequence shortint shortreal
    showcancelled signed small soft solve specify specparam static string strong strong0
    strong1 struct super supply0 supply1 sync_accept_on sync_reject_on table tagged task this
    throughout time timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior
    trireg type typedef union unique unique0 unsigned until until_with untyped use uwire var
    vectored virtual void wait wait_order wand weak weak0 weak1 while wildcard wire with within
    wor xnor xor
"""
#: Every reserved keyword of IEEE 1800-2017 Annex B (a superset of IEEE 1364-2005's).
VERILOG_KEYWORDS = frozenset(_KEYWORD_TEXT.split())

#: Keywords plus ``std``, the built-in package of IEEE 1800 §26.7: Verilator rejects a
#: module (MODDUP) or a port (an error) of that name.
RESERVED_WORDS = VERILOG_KEYWORDS | {"std"}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEPARATORS = re.compile(r"[^A-Za-z0-9_]+")
_HASH_CHARS = 8  # 32 bits: a clash needs ~65k names sharing one readable prefix


def is_verilog_identifier(name: str, *, max_length: int = MAX_IDENTIFIER_LENGTH) -> bool:
    """Whether ``name`` is a plain identifier no longer than ``max_length``, not reserved."""
    return (
        _IDENTIFIER.fullmatch(name) is not None
        and len(name) <= max_length
        and name not in RESERVED_WORDS
    )


def verilog_identifier(
    name: str, *, taken: set[str] | None = None, max_length: int = MAX_IDENTIFIER_LENGTH
) -> str:
    """A legal, readable, deterministic Verilog identifier for any string.

    Accents are stripped (``café`` → ``cafe``), every run of other characters becomes one
    ``_``, a leading digit gets a ``_`` prefix and a reserved word a ``_`` suffix. A name
    that is already legal comes back unchanged. Where readability costs uniqueness (a name
    truncated to ``max_length``, nothing readable left, or a clash with ``taken``), a short
    hash of the original string is appended, so the result depends only on the inputs.

    Parameters
    ----------
    name : str
        Any string, e.g. a PyTorch layer name.
    taken : set of str, optional
        Identifiers already in use. The result differs from each of them, ignoring case
        (identifiers also become file names, and some file systems ignore case), and is
        added to the set.
    max_length : int
        Longest identifier to return, at least 16.

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        ``max_length`` is below 16.

    Example usage::

        taken: set[str] = set()
        verilog_identifier("features.conv1", taken=taken)  # 'features_conv1'
        verilog_identifier("features_conv1", taken=taken)  # 'features_conv1_<8 hex>'
    """
    if not isinstance(name, str):
        raise TypeError(f"Name must be a string, not {name!r}")
    if not isinstance(max_length, int) or max_length < 16:
        raise ValueError(f"Maximum identifier length must be an integer >= 16, not {max_length!r}")
    candidate = _readable(name)
    if not candidate:
        candidate = "id_" + _digest(name)
    elif len(candidate) > max_length:
        candidate = _with_suffix(candidate, _digest(name), max_length)
    if taken is not None:
        candidate = _unused(name, candidate, taken, max_length)
        taken.add(candidate)
    return candidate


def _readable(name: str) -> str:
    """``name`` in ``[A-Za-z0-9_]``, legal to start, not reserved; may be empty or too long."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = "_".join(part for part in _SEPARATORS.split(ascii_name) if part)
    if text[:1].isdigit():
        text = "_" + text
    if text in RESERVED_WORDS:
        text += "_"
    return text


def _unused(name: str, candidate: str, taken: set[str], max_length: int) -> str:
    """``candidate``, or a hash-suffixed variant of it, that is not in ``taken`` (any case)."""
    in_use = {t.lower() for t in taken}
    attempt = 0
    while candidate.lower() in in_use:
        salt = name if attempt == 0 else f"{name}\0{attempt}"
        base = _readable(name) or "id"
        candidate = _with_suffix(base, _digest(salt), max_length)
        attempt += 1
    return candidate


def _with_suffix(base: str, suffix: str, max_length: int) -> str:
    # The suffix is hex after an underscore, so the result can never be a reserved word.
    return f"{base[: max_length - len(suffix) - 1]}_{suffix}"


def _digest(text: str) -> str:
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:_HASH_CHARS]
