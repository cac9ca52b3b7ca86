"""Creates what the schema fuzzing runs against, on a fresh Confab at URL (argv[1]).

An owner and a second member, a server (with its default channels) plus a text channel,
a message, a role, an invite and a soundboard sound, and a second login session of the owner (the one the
session path parameter names, so revoking it leaves the token under test valid). Prints shell assignments: TOKEN (the owner's bearer token)
and the ids the path parameters are pinned to.
"""

import json
import secrets
import sys
import urllib.request

URL = sys.argv[1].rstrip("/") + "/api/v1"


def call(method, path, body=None, token=None, want=(200, 201, 204)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status not in want:
            raise SystemExit(f"{method} {path}: HTTP {r.status}")
        raw = r.read()
        return json.loads(raw) if raw else None


def register(name, password):
    return call("POST", "/auth/register", {"username": name, "password": password})


tag = secrets.token_hex(3)
owner_password = "schema-" + secrets.token_hex(8)
owner = register("owner" + tag, owner_password)
member = register("member" + tag, "schema-" + secrets.token_hex(8))
token = owner["token"]
server = call("POST", "/servers", {"name": "Schema " + tag}, token)
sid = server["id"]
channel = call("POST", f"/servers/{sid}/channels", {"name": "fuzz", "type": "text"}, token)
invite = call("POST", f"/servers/{sid}/invites", {}, token)
call("POST", f"/invites/{invite['code']}", None, member["token"])
message = call("POST", f"/channels/{channel['id']}/messages", {"content": "hello"}, token)
role = call("POST", f"/servers/{sid}/roles", {"name": "fuzzers"}, token)
call("POST", "/auth/login", {"username": owner["user"]["username"], "password": owner_password})
other = [s for s in call("GET", "/users/@me/sessions", None, token) if not s["current"]]
# A soundboard sound: 100 ms of silence as a mono 8 kHz 16-bit WAV, sent raw.
pcm = bytes(1600)
wav = (b"RIFF" + (36 + len(pcm)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
       + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
       + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
       + b"data" + len(pcm).to_bytes(4, "little") + pcm)
req = urllib.request.Request(URL + f"/servers/{sid}/soundboard-sounds?name=fuzz", data=wav, method="POST")
req.add_header("Content-Type", "audio/wav")
req.add_header("Authorization", "Bearer " + token)
with urllib.request.urlopen(req, timeout=30) as r:
    sound = json.loads(r.read())

for key, value in {
    "TOKEN": token,
    "SERVER_ID": sid,
    "CHANNEL_ID": channel["id"],
    "MESSAGE_ID": message["id"],
    "MEMBER_ID": member["user"]["id"],
    "ROLE_ID": role["id"],
    "INVITE_CODE": invite["code"],
    "SESSION_ID": other[0]["id"],
    "SOUND_ID": sound["id"],
}.items():
    print(f"{key}='{value}'")
