#!/usr/bin/env python3
"""Regenerate testdata/tokens.json, the reference token ids for the Go CLIP tokenizer.

Usage (from anywhere):

    python3 clip/tokenizer/testdata/gen.py

The script needs the third-party `regex` module (CLIP's pre-tokenizer uses
\\p{L} / \\p{N} classes that the standard `re` module lacks).  It looks for a
Python that can import it in this order: $PYTHON, /usr/bin/python3, python3,
and re-runs itself with the first one that works; it stops with a clear message
when none can.

This is an independent Python implementation of the algorithm of OpenAI CLIP's
`simple_tokenizer.py` / `clip.tokenize`, written from the description in
docs/models.md section 6, with one deliberate difference that the
Go package shares: CLIP first runs `ftfy.fix_text`, which has no Go
counterpart; both implementations replace it by Unicode NFC normalisation only
(ftfy's default run also NFC-normalises, but in addition repairs mojibake,
straightens curly quotes, expands ligatures, narrows full-width characters,
drops control characters and unescapes HTML once more).  For printable ASCII
text such as class names and prompt templates the two agree, unless it holds
HTML entities escaped three or more times.

CLIP's BPE cache is pre-seeded with the two special tokens, so a literal
"<|startoftext|>" or "<|endoftext|>" in the (cleaned) text encodes to the
special ids 49406 / 49407; that is reproduced here and in Go.

The vocabulary read is the copy embedded by the Go package
(clip/tokenizer/bpe_simple_vocab_16e6.txt.gz).  Output is written atomically.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("regex")

import gzip  # noqa: E402
import hashlib  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import unicodedata  # noqa: E402

import regex  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_GZ = os.path.join(HERE, "..", "bpe_simple_vocab_16e6.txt.gz")
OUT = os.path.join(HERE, "tokens.json")

SOT, EOT = 49406, 49407
N_MERGES = 48894  # 49152 - 256 - 2


# ---------------------------------------------------------------------------
# Reference tokenizer (docs/models.md section 6)
# ---------------------------------------------------------------------------


def byte_table():
    """Byte value -> single printable character, plus the vocabulary order."""
    kept = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    keep = set(kept)
    remapped = [b for b in range(256) if b not in keep]
    table = {b: chr(b) for b in kept}
    for i, b in enumerate(remapped):
        table[b] = chr(256 + i)
    order = [table[b] for b in kept] + [table[b] for b in remapped]
    return table, order


class Reference:
    def __init__(self, gz_path):
        with open(gz_path, "rb") as f:
            raw = f.read()
        self.gz_sha256 = hashlib.sha256(raw).hexdigest()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 1 + N_MERGES]]
        assert all(len(m) == 2 for m in merges)
        self.byte_enc, order = byte_table()
        self.byte_dec = {c: b for b, c in self.byte_enc.items()}
        vocab = order + [c + "</w>" for c in order] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        assert len(vocab) == 49408 and len(set(vocab)) == 49408
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = vocab
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.cache = {"<|startoftext|>": ["<|startoftext|>"], "<|endoftext|>": ["<|endoftext|>"]}
        self.pat = regex.compile(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
            r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
            regex.IGNORECASE,
        )

    @staticmethod
    def clean(text):
        # ftfy.fix_text is replaced by NFC (see module docstring).
        text = unicodedata.normalize("NFC", text)
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r"\s+", " ", text).strip()  # stdlib re: \s == str.isspace
        return text.lower()

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        syms = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(syms) > 1:
            best = None
            for pair in zip(syms, syms[1:]):
                r = self.ranks.get(pair)
                if r is not None and (best is None or r < best[0]):
                    best = (r, pair)
            if best is None:
                break
            a, b = best[1]
            merged, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(syms[i])
                    i += 1
            syms = merged
        self.cache[piece] = syms
        return syms

    def encode(self, text):
        ids = []
        for piece in self.pat.findall(self.clean(text)):
            mapped = "".join(self.byte_enc[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(mapped))
        return ids

    def decode(self, ids):
        chars = "".join(self.decoder[i] for i in ids)
        data = bytes(self.byte_dec[c] for c in chars)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def tokenize(self, texts, context, truncate):
        """Rows of `context` ids, or None when a text is too long and not truncated."""
        rows = []
        for t in texts:
            ids = [SOT] + self.encode(t) + [EOT]
            if len(ids) > context:
                if not truncate:
                    return None
                ids = ids[:context]
                ids[-1] = EOT
            rows.append(ids + [0] * (context - len(ids)))
        return rows


# ---------------------------------------------------------------------------
# Test strings
# ---------------------------------------------------------------------------

KNOWN = [
    "a photo of a fox",
    "a photo of a dog.",
    "a photo of a",
    "X",
    "itap of a tench.",
    "Hello, World!",
    "a centered satellite photo of Annual Crop Land.",
    "1999 Chevrolet",
    "don't",
    "hen of the woods mushroom",
]

TEMPLATES = [
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.",
    "graffiti of a {}.", "the embroidered {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a jpeg corrupted photo of a {}.",
    "a {} in a video game.", "itap of my {}.", "a photo of a {}, a type of pet.",
    "a photo of a {}, a type of flower.", "a photo of a {}, a type of aircraft.",
    "{} texture.", "a centered satellite photo of {}.", "a photo of {}, a type of food.",
    "a photo of a person doing {}.", "i love my {}!", "X X X X X X X X X X X X X X X X {}.",
    "a photo of the small {}.", "art of the {}.", "a origami {}.",
]

CLASSNAMES = [
    "tench", "goldfish", "great white shark", "jack-o'-lantern", "yin yang",
    "707-320", "F-16A/B", "2000 AM General Hummer SUV", "Annual Crop Land",
    "Herbaceous Vegetation Land", "outdoor apartment building", "pink primrose",
    "apple pie", "american bulldog", "Apply Eye Makeup", "Yo Yo", "banded",
    "Sea or Lake", "hen of the woods mushroom", "missile", "sunglasses",
    "Granny Smith", "T-shirt", "loupe, jeweler's loupe", "Boeing 747-400",
    "Cessna 172", "spaghetti carbonara", "crème brûlée", "Saint Bernard",
    "Chihuahua", "face", "leopard", "motorbike", "accordion", "B-52", "DC-10",
    "Audi S4 Sedan 2012", "Mercedes-Benz SL-Class Coupe 2009", "Blowing Dry Hair",
]

EDGE = [
    "", " ", "   ", "\t\n", "a", "A", "I", "!", ".", "?!", "...", "…", "—", "--", "-",
    "HeLLo WoRLD", "ALL CAPS TEXT", "MiXeD-CaSe_snake_case", "camelCaseWordsHere",
    # punctuation and symbols
    "hello, world. how are you? fine!", "(parentheses) [brackets] {braces}",
    "semi;colon:colon", "a/b\\c|d", "under_score", "100%", "#hashtag @mention",
    "$5 €10 £3 ¥100", "x = f(y) + 3.14;", "https://example.com/a_b?x=1&y=2#frag",
    "user.name+tag@example.org", ":-) ;-) <3 :D", "!!!???...", "'''", "\"double\"",
    "“curly double” and ‘curly single’", "don’t", "it’s", "«guillemets»", "¿qué?",
    "∑∫√∞≈≠", "→ ← ↑ ↓", "┌─┐│└┘", "©®™", "°C", "±5", "½ ¼ ¾", "x² y³", "Ⅻ ⅻ",
    # digits
    "0", "7", "42", "1,000,000", "3.14159", "-273.15", "2021-01-30", "12:34:56",
    "1st 2nd 3rd 4th", "٣٤٥", "१२३", "一二三 123",
    # contractions
    "we're", "I'VE", "they'll", "she'd", "I'm", "it's", "It'S", "can't won't",
    "'s", "'t", "'re", "''s", "rock'n'roll", "o'clock", "y'all'd've", "it'ſ",
    "the dog's bone's", "'quoted'", "don''t",
    # unicode letters, accents, normalisation
    "café", "Cafe\u0301", "naïve résumé", "Ångström", "Å", "A\u030a", "straße",
    "ΟΔΟΣ", "Σ", "ΣΑΣ ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "ΑΣ.", "ΑΣ'Β", "İstanbul", "DİYARBAKIR",
    "Москва", "Привет, мир!", "日本語のテキスト", "中文字符", "한국어 텍스트",
    "עברית", "العربية", "ภาษาไทย", "हिन्दी", "Ελληνικά", "ǅemal", "ǈ ǋ",
    "K\u212a", "ﬁne ﬂow", "ＡＢＣ ｆｕｌｌ", "\u1e9e", "ŉ", "Ÿ",
    # emoji
    "🦊", "emoji 🦊🐶👍🏽", "👨\u200d👩\u200d👧", "🇯🇵 🇺🇸", "❤️", "✨ sparkles ✨",
    # HTML entities
    "&amp;", "&#39;", "&amp;amp;", "&amp;amp;amp;", "fish &amp; chips", "rock &#39;n&#39; roll",
    "&lt;b&gt;bold&lt;/b&gt;", "&#x27;hex&#X27;", "&quot;quoted&quot;", "a&nbsp;b",
    "&copy 2021", "&ampx", "&amp-x;", "&alpha-x;", "&alpha;", "&notit;", "&notin;",
    "&NotEqualTilde;", "&fjlig;", "&AMP;", "& amp;", "&;", "&#;", "&#x;", "&#0;",
    "&#1;", "&#13;", "&#127;", "&#65;&#X42;&#x43", "&#xD800;", "&#x110000;",
    "&#99999999999999999999;", "&#xFDD0;", "&#xFFFE;",
    "".join("&#%d;" % n for n in range(128, 160)),
    "&lt;|endoftext|&gt;", "&amp;lt;", "&amp;#39;", "&&amp;&", "&" + "a" * 40 + ";",
    "&amp" + "b" * 35, "&eacute;t&eacute;", "&Eacute;", "&EACUTE;",
    # whitespace
    "  leading", "trailing  ", "a\tb\nc\r\nd", "a  \t  b", "a\u00a0b", "a\u3000b",
    "a\u2028b", "a\u2029b", "\x1c\x1d a \x1e\x1f", "a\x1fb", "a\x85b", "\x0b\x0c",
    "a\u200bb", "a\u2060b", "a\u202fb\u205fc", "\u1680x",
    # special tokens
    "<|startoftext|>", "<|endoftext|>", "hello<|endoftext|>world", "<|ENDOFTEXT|>",
    "<|endoftext", "<|startoftext|><|endoftext|>", "</w>", "a</w>b",
    # control characters
    "\x00", "a\x00b", "\x7f", "\x01\x02",
    # long words
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 300,
    "ab" * 120,
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "x" * 77,
    "🦊" * 30,
    "日本" * 50,
]

POOL = (
    list("abcdefghijklmnopqrstuvwxyz") * 4
    + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + list("0123456789") * 2
    + list(" " * 20)
    + list("\t\n\u00a0")
    + list(".,;:!?'\"-_()[]{}<>/\\|@#$%^&*+=~`")
    + list("éèêëàâäôöûüçñßøåæœ")
    + list("ÉÀÇÑØÅ")
    + list("абвгдежзийклмнопрстуфхцчшщыэюя")
    + list("ΑΒΓΔΣσς")
    + list("日本語中文字한국어")
    + ["🦊", "🐶", "👍", "🏽", "\u200d", "\u0301", "\u0308"]
    + ["&amp;", "&#39;", "&lt;", "&gt;", "&quot;", "&amp;amp;", "'s", "'t", "'ll"]
)


def random_strings(n, seed=20240229):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(POOL) for _ in range(k)))
    return out


def template_strings():
    out = []
    for i, t in enumerate(TEMPLATES):
        for j in range(3):
            out.append(t.format(CLASSNAMES[(3 * i + j) % len(CLASSNAMES)]))
    return out


def tokenize_cases(ref):
    long_text = " ".join(["a photo of a dog on the beach"] * 15)
    # Texts whose encodings have exactly 75 and 76 ids (77 and 78 with SOT/EOT).
    fits = " ".join(["cat"] * 75)
    over = " ".join(["cat"] * 76)
    assert len(ref.encode(fits)) == 75 and len(ref.encode(over)) == 76
    cases = [
        (["a photo of a dog.", "a photo of a fox"], 77, False),
        ([""], 77, False),
        (["a photo of a fox"], 8, False),
        (["a photo of a fox"], 7, False),
        (["a photo of a fox"], 7, True),
        ([fits], 77, False),
        ([over], 77, False),
        ([over], 77, True),
        ([long_text], 77, False),
        ([long_text], 77, True),
        ([long_text, "short one"], 77, True),
        ([long_text], 16, True),
        (["a photo of a fox"], 2, True),
        ([""], 2, False),
        (["hello <|endoftext|> world"], 77, False),
        (["🦊" * 40], 77, True),
        (["Hello, World!", "itap of a tench.", "X X X X X X X X X X X X X X X X tench."], 77, False),
    ]
    out = []
    for texts, ctx, trunc in cases:
        rows = ref.tokenize(texts, ctx, trunc)
        item = {"texts": texts, "context": ctx, "truncate": trunc}
        if rows is None:
            item["error"] = True
        else:
            item["rows"] = rows
            item["eot_index"] = [max(range(len(r)), key=lambda k: (r[k], -k)) for r in rows]
        out.append(item)
    return out


def decode_cases(ref):
    b = {byte: ref.encoder[ch] for byte, ch in ref.byte_enc.items()}
    w = lambda byte: b[byte] + 256  # noqa: E731  (byte char + "</w>")
    seqs = [
        [SOT, 320, 1125, 539, 320, 3240, EOT, 0, 0, 0],
        [],
        [0],
        [b[0xE6], b[0x97]],  # truncated 3-byte sequence
        [b[0xE6], b[0x97], w(0xA5)],  # complete "日" split over three tokens
        [b[0xFF]],
        [b[0xC0], b[0x80]],
        [b[0xED], b[0xA0], b[0x80]],  # encoded surrogate
        [b[0xF0], b[0x9F], w(0xA6)],  # truncated 4-byte sequence, then "</w>"
        [b[0xF4], b[0x90], b[0x80], b[0x80]],
        [b[0xE0], b[0x80], b[0xAF]],
        [b[0xC3], w(0xA9), b[0xC3]],
        [w(0x20), w(0x0A)],
        [49405, 49404, 512, 513],
    ]
    return [{"ids": s, "text": ref.decode(s)} for s in seqs]


def python_unicode_tables():
    space, lower = [], {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if c.isspace():
            space.append(cp)
        lc = c.lower()
        if lc != c:
            lower[str(cp)] = [ord(x) for x in lc]
    return {"unicode_version": unicodedata.unidata_version, "space": space, "lower": lower}


def main():
    ref = Reference(VOCAB_GZ)
    texts = []
    seen = set()
    for t in KNOWN + EDGE + template_strings() + random_strings(140):
        if t not in seen:
            seen.add(t)
            texts.append(t)
    cases = []
    for t in texts:
        ids = ref.encode(t)
        cases.append({"text": t, "ids": ids, "decoded": ref.decode(ids)})
    data = {
        "generator": "clip/tokenizer/testdata/gen.py",
        "python": sys.version.split()[0],
        "regex": regex.__version__,
        "vocab_sha256": ref.gz_sha256,
        "cases": cases,
        "tokenize": tokenize_cases(ref),
        "decode": decode_cases(ref),
        "python_unicode": python_unicode_tables(),
    }
    blob = json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", suffix=".json", dir=HERE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.write(b"\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, OUT)
    except BaseException:
        os.unlink(tmp)
        raise
    print("wrote %s: %d cases, %d tokenize cases, %d bytes" % (OUT, len(cases), len(data["tokenize"]), len(blob) + 1))


if __name__ == "__main__":
    main()
