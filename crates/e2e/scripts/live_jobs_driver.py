#!/usr/bin/env python3
"""Drives the real `bulwark up` + agent through RFD 0012's scenarios (a
stand-in for crates/e2e/tests/live_jobs.rs while the e2e crate cannot be
built in time here). Prints figures; exits non-zero on a failed check."""
import base64, hashlib, hmac, json, os, re, struct, subprocess, sys, tempfile, threading, time
import requests

T = os.path.expanduser("~/.cache/bulwark/helper-a-target/debug")
BULWARK, AGENT = f"{T}/bulwark", f"{T}/bulwark-agent"
PP = "live jobs driver passphrase"
D = tempfile.mkdtemp(prefix="bulwark-jl-")
CFG = f"{D}/operator-config"
ENV = dict(os.environ, BULWARK_CONFIG_DIR=CFG, BULWARK_KEY_PASSPHRASE=PP, RUST_LOG="info")
used = set()

def totp(secret):
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    while True:
        step = int(time.time()) // 30
        for s in (step - 1, step, step + 1):
            if s not in used and s >= step - (0 if time.time() % 30 < 25 else -1):
                used.add(s)
                h = hmac.new(key, struct.pack(">Q", s), hashlib.sha1).digest()
                o = h[-1] & 15
                return "%06d" % ((struct.unpack(">I", h[o:o+4])[0] & 0x7fffffff) % 1000000)
        time.sleep(1)

def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        raise SystemExit(1)

def cli(*args, stdin=None, ok=True):
    r = subprocess.run([BULWARK, *args], env=ENV, input=stdin, capture_output=True, text=True, timeout=120)
    if ok and r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"bulwark {' '.join(args)} failed")
    return r

up = subprocess.Popen([BULWARK, "up", "--data-dir", D, "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
                       "--agent-bin", AGENT, "--heartbeat-secs", "2"], env=ENV, stdout=subprocess.PIPE, stderr=open(f"{D}/up.err", "w"), text=True)
lines = []
threading.Thread(target=lambda: [lines.append(l) for l in up.stdout], daemon=True).start()
try:
    for _ in range(200):
        if os.path.exists(f"{D}/server.json") and any("Setup code:" in l for l in lines):
            break
        time.sleep(0.2)
    info = json.load(open(f"{D}/server.json"))
    base = info["console_url"].rstrip("/")
    code = [l.split("Setup code:")[1].strip() for l in lines if "Setup code:" in l][0]
    s = requests.Session()
    r = s.post(f"{base}/api/v1/setup", json={"code": code, "username": "owner", "password": "correct horse battery staple"})
    check(r.status_code == 201, f"setup {r.status_code}")
    secret = r.json()["totp_secret"]
    r = s.post(f"{base}/api/v1/setup/confirm", json={"enrolment_id": r.json()["enrolment_id"], "otp": totp(secret)})
    check(r.status_code == 201, f"setup confirm {r.status_code} {r.text[:200]}")
    r = s.post(f"{base}/api/v1/auth/login", json={"username": "owner", "password": "correct horse battery staple", "otp": totp(secret)})
    token = r.json()["token"]
    api = lambda p: requests.get(f"{base}{p}", headers={"Authorization": f"Bearer {token}"}).json()
    cli("login", "--server", base, "--username", "owner", "--password-stdin", "--otp", totp(secret), stdin="correct horse battery staple\n")
    cli("keys", "register", "--name", "operator")
    for _ in range(100):
        devs = api("/api/v1/tenants/demo/devices")
        if devs and devs[0]["online"]:
            break
        time.sleep(0.2)
    local = devs[0]["id"]
    check(devs[0].get("protocol_version") == 3, f"the agent speaks protocol {devs[0].get('protocol_version')}")

    def submit(targets, command):
        r = cli("job", "run", "--tenant", "demo", "--targets", targets, "--command", command, "--reason", "driver", "--no-wait", "--json")
        return json.loads(r.stdout)["id"]
    def job(j): return api(f"/api/v1/jobs/{j}")
    def target(view, dev): return [t for t in view["targets"] if t["device_id"] == dev][0]
    def wait_status(j, want, secs=60):
        end = time.time() + secs
        while time.time() < end:
            v = job(j)
            if v["status"] == want:
                return v
            time.sleep(0.1)
        raise SystemExit(f"job {j} never {want}: {json.dumps(job(j))[:600]}")
    def output(j, dev, after=None):
        return api(f"/api/v1/jobs/{j}/output?device={dev}" + (f"&after={after}" if after is not None else ""))

    # 1. live output while running, and --follow printing it as it comes
    j = submit(local, 'for i in 1 2 3 4 5 6; do echo "line $i"; sleep 0.5; done')
    follow = subprocess.Popen([BULWARK, "job", "show", j, "--follow"], env=ENV, stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    got = []
    threading.Thread(target=lambda: [got.append((time.time() - t0, l)) for l in follow.stdout], daemon=True).start()
    seen = None
    while time.time() - t0 < 30:
        o = output(j, local)
        text = "".join(c["text"] for c in o["chunks"])
        if "line 1" in text and o["status"] == "running":
            seen = text
            break
        time.sleep(0.1)
    check(seen is not None and "line 6" not in seen, f"partial output through the API while running: {seen!r}")
    v = wait_status(j, "done")
    follow.wait(timeout=30)
    t = target(v, local)
    check(t["status"] == "succeeded" and t["running_at"] and 2500 <= t["duration_ms"] < 20000, f"succeeded, took {t['duration_ms']} ms")
    lines1 = [(round(at, 1), l.strip()) for at, l in got if l.startswith("line")]
    check(len(lines1) == 6 and lines1[-1][0] - lines1[0][0] > 1.5, f"--follow printed lines as they came: {lines1}")
    print("FIGURE live: first line via --follow at %.1f s, last at %.1f s after submit" % (lines1[0][0], lines1[-1][0]))

    # 2. cancel sleep 60
    pidf = f"{D}/sleeper.pid"
    j = submit(local, f"sleep 60 & echo $! > '{pidf}'; wait")
    end = time.time() + 30
    while time.time() < end:
        if target(job(j), local)["status"] == "running" and os.path.exists(pidf) and open(pidf).read().strip():
            break
        time.sleep(0.1)
    pid = int(open(pidf).read())
    check(os.path.exists(f"/proc/{pid}"), f"sleeper {pid} runs")
    t0 = time.time()
    cli("job", "cancel", j, "--reason", "driver: stop it")
    v = wait_status(j, "cancelled", 30)
    took = time.time() - t0
    check(target(v, local)["status"] == "cancelled", "target cancelled")
    def alive(pid):
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    check(not alive(pid), f"process {pid} gone (or a zombie waiting for init to reap it)")
    check(took < 5, f"cancel took {took:.2f} s")
    print("FIGURE cancel: job cancelled and sleeper gone %.2f s after `bulwark job cancel` started" % took)
    audit = api("/api/v1/tenants/demo/audit")
    check(any(e["action"] == "job.cancelled" and e["target"] == j for e in audit), "job.cancelled in the audit log")
    r = cli("job", "cancel", j, "--reason", "again", ok=False)
    check(r.returncode != 0, "second cancel refused: " + r.stderr.strip()[:120])

    # 3. offline device: waiting_offline, then partial
    r = requests.post(f"{base}/api/v1/tenants/demo/enrollment-tokens", json={}, headers={"Authorization": f"Bearer {token}"})
    check(r.status_code in (200, 201), f"token {r.status_code} {r.text[:200]}")
    extra_dir = f"{D}/extra-agent"
    os.makedirs(extra_dir)
    subprocess.run([AGENT, "enroll", "--server", info["gateway_url"], "--token", r.json()["token"], "--state-dir", extra_dir], check=True, capture_output=True, timeout=60)
    extra = [d for d in api("/api/v1/tenants/demo/devices") if d["id"] != local][0]["id"]
    j = submit(f"{local},{extra}", f"case \"$PWD\" in '{extra_dir}'/*) echo failing here; exit 3;; esac; echo fine")
    end = time.time() + 30
    while time.time() < end:
        v = job(j)
        if target(v, local)["status"] == "succeeded":
            break
        time.sleep(0.1)
    check(target(v, extra)["status"] == "waiting_offline" and v["status"] == "running", f"offline target: {target(v, extra)['status']}, job {v['status']}")
    shown = cli("job", "show", j).stdout
    check("waiting: device offline" in shown, "`job show` says the device is offline")
    agent = subprocess.Popen([AGENT, "run", "--state-dir", extra_dir], env=ENV, stdout=subprocess.DEVNULL, stderr=open(f"{D}/extra.err", "w"))
    try:
        v = wait_status(j, "partial", 60)
        t = target(v, extra)
        check(t["status"] == "failed" and t["exit_code"] == 3, f"the other device failed: {t['status']} {t['exit_code']}")
    finally:
        agent.terminate()
    # 4. truncation + escapes
    j = submit(local, "printf '<script>alert(1)</script>\\033[31mRED\\033[0m\\n'; head -c 1200000 /dev/zero | tr '\\000' a")
    v = wait_status(j, "done")
    t = target(v, local)
    text, after = "", None
    while True:
        o = output(j, local, after)
        text += "".join(c["text"] for c in o["chunks"])
        after = o["next"]
        if len(o["chunks"]) < 256:
            break
    check(len(text) <= 1048576 and t["live_truncated"] > 0 and t["live_truncated"] + len(text) == 1200000 + len("<script>alert(1)</script>\x1b[31mRED\x1b[0m\n"),
          f"kept {len(text)} truncated {t['live_truncated']}")
    f = cli("job", "show", j, "--follow")
    check(f"[... {t['live_truncated']} bytes truncated ...]" in f.stdout, "--follow shows the truncation marker")
    check("\x1b" not in f.stdout and "\ufffd[31mRED" in f.stdout, "--follow shows escapes inert")
    print("FIGURE truncation: kept %d bytes, %d truncated" % (len(text), t["live_truncated"]))
    print("LIST", cli("job", "list", "--tenant", "demo").stdout)

    # 5. the console, in headless Chromium through ChromeDriver (WebDriver over HTTP)
    j = submit(local, "printf '<img src=x onerror=alert(1)><script>alert(2)</script>\\n'; "
                      "for i in $(seq 1 40); do echo \"step $i of 40: checking disks\"; sleep 1; done")
    import socket
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
    drv = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wd = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                requests.get(f"{wd}/status", timeout=1); break
            except Exception:
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                         "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tempfile.mkdtemp()}", "--window-size=1400,1000"]}}}}
        sid = requests.post(f"{wd}/session", json=caps).json()["value"]["sessionId"]
        W = f"{wd}/session/{sid}"
        def el(css): return list(requests.post(f"{W}/element", json={"using": "css selector", "value": css}).json()["value"].values())[0]
        def js(script): return requests.post(f"{W}/execute/sync", json={"script": script, "args": []}).json()["value"]
        requests.post(f"{W}/url", json={"url": f"{base}/login"})
        for name, value in [("username", "owner"), ("password", "correct horse battery staple"), ("otp", totp(secret))]:
            requests.post(f"{W}/element/{el(f'input[name={name}]')}/value", json={"text": value})
        requests.post(f"{W}/element/{el('#login-submit')}/click", json={})
        time.sleep(1.5)
        requests.post(f"{W}/url", json={"url": f"{base}/jobs/{j}"})
        text = ""
        end = time.time() + 30
        while time.time() < end and "step 4 of 40" not in text:
            time.sleep(0.5)
            text = js("const p = document.querySelector('pre.live-output'); return p ? p.textContent : '';") or ""
        check("step 4 of 40" in text, f"the console shows live output: {text[:80]!r}")
        check(text.startswith("<img src=x onerror=alert(1)><script>alert(2)</script>"), "the agent's HTML is shown as text")
        check(js("return document.querySelectorAll('pre.live-output img, pre.live-output script').length") == 0, "no element made of the agent's HTML")
        badge = js("return document.getElementById('job-state').textContent")
        check(badge == "running", f"the badge says running: {badge!r}")
        time.sleep(2)
        js("document.querySelector('h2.section-title').scrollIntoView(); return 1;")
        time.sleep(0.5)
        png = requests.get(f"{W}/screenshot").json()["value"]
        out = os.environ.get("SHOT", f"{D}/job-live.png")
        open(out, "wb").write(base64.b64decode(png))
        print("SCREENSHOT", out)
        requests.delete(W)
    finally:
        drv.terminate()
    print("DATA", D, base)
    if len(sys.argv) > 1 and sys.argv[1] == "--keep":
        open(f"{D}/secret", "w").write(secret)
        print("keeping the server up; kill", up.pid)
        up.wait()
finally:
    if not (len(sys.argv) > 1 and sys.argv[1] == "--keep"):
        up.terminate()
        up.wait(timeout=20)
