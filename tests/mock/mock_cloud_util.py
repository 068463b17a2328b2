#!/usr/bin/env python3
"""Helpers for test_mock_cloud.sh (standard library only).

  frames FILE             decode an AWS event stream: one JSON line per frame
                          {"mt","type","payload"} (or {"bad":"prelude|message crc"}), checking CRCs
  jwt AUD [KEY=VALUE...]  an unsigned-but-well-shaped RS256 JWT for the mock's /token
                          (claims overridable; VALUE parsed as JSON when it can be)
  sigv4 SECRET PATH BODY_FILE HOST
                          headers (one per line) of a SigV4-signed POST, service bedrock, us-east-1
"""
import base64, datetime, hashlib, hmac, json, struct, sys, time, urllib.parse, zlib


def frames(path):
    data = open(path, "rb").read()
    while len(data) >= 12:
        total, hlen, pcrc = struct.unpack(">III", data[:12])
        if zlib.crc32(data[:8]) != pcrc:
            print(json.dumps({"bad": "prelude"}))
            return
        f, data = data[:total], data[total:]
        if len(f) < total:
            print(json.dumps({"bad": "truncated"}))
            return
        if zlib.crc32(f[:-4]) != struct.unpack(">I", f[-4:])[0]:
            print(json.dumps({"bad": "message crc"}))
            continue
        h, i = {}, 12
        while i < 12 + hlen:
            nl = f[i]; name = f[i + 1:i + 1 + nl].decode(); i += 1 + nl
            vt = f[i]; i += 1
            assert vt == 7, vt
            vl = struct.unpack(">H", f[i:i + 2])[0]; h[name] = f[i + 2:i + 2 + vl].decode(); i += 2 + vl
        payload = json.loads(f[12 + hlen:-4])
        print(json.dumps({"mt": h.get(":message-type"), "type": h.get(":event-type") or h.get(":exception-type"),
                          "ct": h.get(":content-type"), "payload": payload}))
    if data:
        print(json.dumps({"bad": "trailing"}))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(aud, *overrides):
    now = int(time.time())
    claims = {"iss": "sa@p.iam.gserviceaccount.com", "scope": "https://www.googleapis.com/auth/cloud-platform",
              "aud": aud, "iat": now, "exp": now + 3600}
    header = {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    for o in overrides:
        k, v = o.split("=", 1)
        try:
            v = json.loads(v)
        except ValueError:
            pass
        if k.startswith("h."):
            header[k[2:]] = v
        elif v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    print(b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode()) + "." + b64u(b"\x01" * 256))


def sigv4(secret, path, body_file, host):
    body = open(body_file, "rb").read()
    amz = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    date, region = amz[:8], "us-east-1"
    hdrs = {"content-type": "application/json", "host": host, "x-amz-date": amz}
    signed = ";".join(sorted(hdrs))
    curi = "/".join(urllib.parse.quote(seg, safe="-_.~") for seg in path.split("/"))
    creq = "\n".join(["POST", curi, "", "".join(f"{k}:{hdrs[k]}\n" for k in sorted(hdrs)), signed,
                      hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{region}/bedrock/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for m in (date, region, "bedrock", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    print(f"x-amz-date: {amz}")
    print(f"Authorization: AWS4-HMAC-SHA256 Credential=AKIDMOCK/{scope}, SignedHeaders={signed}, Signature={sig}")


if __name__ == "__main__":
    {"frames": frames, "jwt": jwt, "sigv4": sigv4}[sys.argv[1]](*sys.argv[2:])
