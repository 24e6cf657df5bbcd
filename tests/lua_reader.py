"""Reads a ``name = { ... }`` Lua file (what a ``.lrsmcol`` is) with the real Lua 5.1, the Lua Lightroom runs.

The table comes back as nested dicts through a dump whose strings are hex-encoded, so every byte
is compared exactly; text Lua refuses is a ``LuaSyntaxError`` with Lua's own message.
"""

from __future__ import annotations

import shutil
import subprocess

LUA = shutil.which("lua5.1")
_DUMP = r"""
local source = io.read("*a")
local chunk, problem = loadstring(source)
if not chunk then io.stderr:write(problem) os.exit(2) end
local env = {}
setfenv(chunk, env)
chunk()
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function dump(value)
  local kind = type(value)
  if kind == "table" then
    io.write("{")
    for k, v in pairs(value) do io.write(type(k) == "number" and ("n" .. k) or ("s" .. hex(k)), "=") dump(v) io.write(";") end
    io.write("}")
  elseif kind == "string" then io.write("s", hex(value))
  elseif kind == "number" then io.write("n", tostring(value))
  elseif kind == "boolean" then io.write("b", tostring(value))
  else io.stderr:write("unexpected " .. kind) os.exit(3) end
end
local names = {}
for name in pairs(env) do names[#names + 1] = name end
if #names ~= 1 then io.stderr:write("expected one assignment") os.exit(4) end
io.write(hex(names[1]), " ")
dump(env[names[1]])
"""


class LuaSyntaxError(ValueError):
    pass


def _parse(dump: str, at: int = 0):
    kind = dump[at]
    if kind == "{":
        table, at = {}, at + 1
        while dump[at] != "}":
            equals = dump.index("=", at)
            key = dump[at:equals]
            key = int(float(key[1:])) if key[0] == "n" else bytes.fromhex(key[1:]).decode("utf-8", "surrogateescape")
            table[key], at = _parse(dump, equals + 1)
            at += 1  # the ";"
        return table, at + 1
    end = at + 1
    while end < len(dump) and dump[end] not in ";}":
        end += 1
    text = dump[at + 1 : end]
    if kind == "s":
        return bytes.fromhex(text).decode("utf-8", "surrogateescape"), end
    if kind == "n":
        return (int(float(text)) if float(text).is_integer() else float(text)), end
    return text == "true", end


def read_assignment(text: str) -> tuple[str, object]:
    """(name, value) of the one global that ``text`` assigns, as Lua 5.1 reads it."""
    assert LUA is not None, "lua5.1 is missing: scripts/setup.sh --dev installs it"
    done = subprocess.run(
        [LUA, "-e", _DUMP], input=text.encode("utf-8", "surrogateescape"), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise LuaSyntaxError(done.stderr.decode("utf-8", "replace"))
    name, dump = done.stdout.decode("ascii").split(" ", 1)
    return bytes.fromhex(name).decode(), _parse(dump)[0]
