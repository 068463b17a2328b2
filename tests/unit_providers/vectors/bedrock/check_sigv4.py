#!/usr/bin/env python3
"""check_sigv4.py - recomputes the SigV4 Authorization header of every request vector
(requests/*.out.json written by test_bedrock) with Python's hmac/hashlib, independently of
the C code: canonical URI = the sent path quoted again per segment (non-S3 rule, as
botocore does), signed headers and values taken from the vector, payload hash =
body_sha256 (test_bedrock checks that it is the SHA-256 of the exact body bytes).
Usage: check_sigv4.py REQUESTS_DIR. Exit 0 when all match and at least one was checked."""
import glob
import hashlib
import hmac
import json
import os
import sys
from urllib.parse import quote, urlsplit

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # the AWS documentation example key


def signature(method, path, headers, signed, payload_hash, amz_date, scope):
    canon = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed)
    creq = "\n".join([method, quote(path, safe="/~"), "", canon, ";".join(signed), payload_hash])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    key = ("AWS4" + SECRET).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def main(d):
    checked = 0
    for path in sorted(glob.glob(os.path.join(d, "*.out.json"))):
        v = json.load(open(path, encoding="utf-8"))
        if "headers" not in v:
            continue
        headers = {}
        for h in v["headers"]:
            name, value = h.split(": ", 1)
            headers[name.lower()] = value
        auth = headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            continue
        fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        akid, scope = fields["Credential"].split("/", 1)
        signed = fields["SignedHeaders"].split(";")
        url = urlsplit(v["url"])
        if headers.get("host") != url.netloc.lower():
            sys.exit(f"{path}: host header {headers.get('host')!r} is not the URL's {url.netloc!r}")
        if signed != sorted(signed) or "host" not in signed or "x-amz-date" not in signed:
            sys.exit(f"{path}: bad SignedHeaders {signed}")
        want = signature("POST", url.path, headers, signed, v["body_sha256"],
                         headers["x-amz-date"], scope)
        if fields["Signature"] != want:
            sys.exit(f"{path}: signature {fields['Signature']} != {want}")
        checked += 1
    if not checked:
        sys.exit("no signed request vector found")
    print(f"{checked} signed request vectors verified")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "requests"))
