"""An agent release channel made with python-tuf's metadata API, for
crates/e2e/tests/agent_update.rs (RFD 0017).

Usage: python release_channel.py OUTDIR AGENT_BINARY PLATFORM

Writes, each a TUF repository directory as `bulwark release import` reads
it (metadata/*.json, targets/<consistent-snapshot names>):

  OUTDIR/root.json      the release root agents pin (version 1)
  OUTDIR/good/          version 1: releases 0.1.5 and 0.2.0 (the real agent
                        binary with a few bytes appended: it still runs, with
                        a SHA-256 of its own) and 0.3.0 (`#!/bin/sh` exit 1:
                        a release that crashes at start)
  OUTDIR/too_few_keys/  version 2: adds 0.4.0, but its targets metadata is
                        signed by 1 of the 2 targets keys the root requires
                        (timestamp and snapshot are signed correctly)

and prints {"0.1.5": sha256, ...} of every release.
"""

import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

FUTURE = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)


def main():
    outdir, agent_path, platform = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(agent_path, "rb") as f:
        agent = f.read()
    releases = {
        "0.1.5": agent + b"\n# bulwark e2e release 0.1.5\n",
        "0.2.0": agent + b"\n# bulwark e2e release 0.2.0\n",
        "0.3.0": b"#!/bin/sh\nexit 1\n",
    }
    later = {"0.4.0": agent + b"\n# bulwark e2e release 0.4.0\n"}

    signers = {r: [CryptoSigner.generate_ed25519()] for r in ("timestamp", "snapshot")}
    signers["targets"] = [CryptoSigner.generate_ed25519() for _ in range(2)]
    signers["root"] = [CryptoSigner.generate_ed25519() for _ in range(2)]
    root = Metadata(Root(expires=FUTURE, consistent_snapshot=True))
    for role, keys in signers.items():
        for s in keys:
            root.signed.add_key(s.public_key, role)
    root.signed.roles["root"].threshold = 2
    root.signed.roles["targets"].threshold = 2
    for s in signers["root"]:
        root.sign(s, append=True)
    root_bytes = root.to_bytes(JSONSerializer())
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "root.json"), "wb") as f:
        f.write(root_bytes)

    targets = Metadata(Targets(expires=FUTURE))
    snapshot = Metadata(Snapshot(expires=FUTURE))
    timestamp = Metadata(Timestamp(expires=FUTURE))

    def publish(name, files, version, targets_signers):
        d = os.path.join(outdir, name)
        os.makedirs(os.path.join(d, "metadata"), exist_ok=True)
        for v, data in files.items():
            target = f"bulwark-agent/{v}/{platform}"
            tf = TargetFile.from_data(target, data, ["sha256"])
            tf.unrecognized_fields["custom"] = {"version": v}
            targets.signed.targets[target] = tf
            path = os.path.join(d, "targets", "bulwark-agent", v,
                                f"{tf.hashes['sha256']}.{platform}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        for md in (targets, snapshot, timestamp):
            md.signed.version = version
        targets.signatures.clear()
        for s in targets_signers:
            targets.sign(s, append=True)
        t = targets.to_bytes(JSONSerializer())
        snapshot.signed.meta["targets.json"] = MetaFile(version)
        snapshot.signatures.clear()
        snapshot.sign(signers["snapshot"][0])
        sn = snapshot.to_bytes(JSONSerializer())
        timestamp.signed.snapshot_meta = MetaFile.from_data(version, sn, ["sha256"])
        timestamp.signatures.clear()
        timestamp.sign(signers["timestamp"][0])
        docs = {
            "1.root.json": root_bytes,
            f"{version}.targets.json": t,
            f"{version}.snapshot.json": sn,
            "timestamp.json": timestamp.to_bytes(JSONSerializer()),
        }
        for fname, data in docs.items():
            with open(os.path.join(d, "metadata", fname), "wb") as f:
                f.write(data)

    publish("good", releases, 1, signers["targets"])
    publish("too_few_keys", later, 2, signers["targets"][:1])
    print(json.dumps({v: hashlib.sha256(b).hexdigest()
                      for v, b in {**releases, **later}.items()}))


if __name__ == "__main__":
    main()
