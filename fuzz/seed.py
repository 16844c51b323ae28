"""Seeds each fuzz target's corpus from examples/: the AdmissionReview requests, their objects,
the configs, the image references the reviews hold, the example secrets' docker configs and
their auths keys. Writes into the directory given (one subdirectory per target)."""

import base64
import hashlib
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "examples"
out = pathlib.Path(sys.argv[1])


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def images(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "image" and isinstance(v, str):
                yield v
            else:
                yield from images(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from images(v)


for review in sorted(root.glob("*/reviews/*.json")):
    body = review.read_bytes()
    put("admission_review", body)
    request = json.loads(body).get("request") or {}
    if request.get("object") is not None:
        put("patch_applies", json.dumps(request["object"]))
    for image in images(request.get("object")):
        put("image_reference", image)
        # libFuzzer's (&str, &str) input: any split of the bytes; one with the image is enough.
        put("registry_key", "docker.io" + image)

for config in sorted(root.glob("*/config.yaml")):
    put("config_yaml", config.read_bytes())

for manifest in sorted(root.glob("*/cluster/*.yaml")):
    for encoded in re.findall(r"\.docker(?:config)?(?:json|cfg)\"?:\s*([A-Za-z0-9+/=]{16,})", manifest.read_text()):
        try:
            data = base64.b64decode(encoded)
            parsed = json.loads(data)
        except ValueError:
            continue
        put("docker_config", data)
        for key in (parsed.get("auths") or parsed):
            put("registry_key", key)
