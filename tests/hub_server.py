"""A Hub of our own on 127.0.0.1 that speaks enough of the Hugging Face Hub's HTTP API for ``huggingface_hub``'s
real client code: model and dataset info with their files and sizes (at ``main`` or the repository's commit),
file downloads (HEAD and GET, with ranges, so that a broken download resumes), gated repositories that want a
token, and a log of every file fetched.

    with LocalHub() as hub:
        hub.add("owner/name", {"config.json": b"...", "model.safetensors": b"..."})
        hub.add("owner/data", {"data/train-00000-of-00001.parquet": b"..."}, repo_type="dataset")
        os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    commit: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha1(self.files[name]).digest())
        self.commit = digest.hexdigest()


@dataclass
class LocalHub:
    repos: dict[str, Repo] = field(default_factory=dict)  # model repositories
    datasets: dict[str, Repo] = field(default_factory=dict)  # dataset repositories
    fetched: list[str] = field(default_factory=list)  # "repo/file" ("datasets/repo/file") of every GET of a file
    drop_once: set[str] = field(default_factory=set)  # "repo/file": the first GET breaks off half way
    tokens: set[str] = field(default_factory=lambda: {"hf_good_token"})
    pushes: list[dict] = field(default_factory=list)  # every commit pushed: repo, message, {path: bytes}
    created: dict[str, bool] = field(default_factory=dict)  # repositories created: repo id -> private

    def add(self, repo_id: str, files: dict[str, bytes], gated: bool = False, repo_type: str = "model") -> Repo:
        """A model repository, or a dataset repository with ``repo_type="dataset"`` (file names may hold folders:
        ``data/train-00000-of-00001.parquet``)."""
        repos = self.datasets if repo_type == "dataset" else self.repos
        repos[repo_id] = Repo(dict(files), gated)
        return repos[repo_id]

    def add_folder(self, repo_id: str, folder: Path, gated: bool = False) -> Repo:
        return self.add(repo_id, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}, gated)

    def __enter__(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            owner = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # quick to stop
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


INFO = re.compile(r"^/api/models/([^/?]+/[^/?]+)(?:/revision/([^/?]+))?/?(?:\?.*)?$")
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
DATASET_INFO = re.compile(r"^/api/datasets/([^/?]+/[^/?]+)(?:/revision/([^/?]+))?/?(?:\?.*)?$")
DATASET_RESOLVE = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    owner: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _json(self, status: int, obj: object, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self, repo: Repo) -> bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return not repo.gated or token in self.owner.tokens

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if match := INFO.match(self.path):
            return self._info(match.group(1))
        if match := DATASET_INFO.match(self.path):
            return self._dataset_info(match.group(1), match.group(2))
        if match := DATASET_RESOLVE.match(self.path.split("?")[0]):
            return self._dataset_file(match.group(1), match.group(2), match.group(3))
        if match := RESOLVE.match(self.path.split("?")[0]):
            return self._file(match.group(1), match.group(3))
        self._json(404, {"error": "not found"}, {"X-Error-Code": "EntryNotFound"})

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.owner.tokens:
            return self._json(401, {"error": "Invalid credentials"})
        path = self.path.split("?")[0]
        if path == "/api/validate-yaml":  # the client checks a model card's front matter
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = (
                f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
            )
            if repo_id in self.owner.repos:
                return self._json(409, {"error": "You already created this model repo"})
            self.owner.add(repo_id, {})
            self.owner.created[repo_id] = request.get("visibility") == "private" or bool(request.get("private"))
            return self._json(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
        if match := re.match(r"^/api/models/([^/]+/[^/]+)/preupload/[^/]+$", path):
            files = json.loads(body)["files"]
            return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                              for f in files]})  # fmt: skip
        if match := re.match(r"^/api/models/([^/]+/[^/]+)/commit/[^/]+$", path):
            return self._commit(match.group(1), body)
        self._json(404, {"error": "not found"})

    def _commit(self, repo_id: str, body: bytes) -> None:
        import base64

        repo = self.owner.repos.get(repo_id)
        if repo is None:
            return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        files = {item["value"]["path"]: base64.b64decode(item["value"]["content"]) for item in lines
                 if item["key"] == "file"}  # fmt: skip
        message = next(item["value"]["summary"] for item in lines if item["key"] == "header")
        self.owner.pushes.append({"repo": repo_id, "message": message, "files": files})
        repo.files.update(files)
        repo.__post_init__()
        host = self.headers["Host"]
        self._json(200, {"commitUrl": f"http://{host}/{repo_id}/commit/{repo.commit}", "commitOid": repo.commit})

    def _info(self, repo_id: str) -> None:
        repo = self.owner.repos.get(repo_id)
        if repo is None:
            return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.files.items())]
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "siblings": siblings,
                         "gated": "manual" if repo.gated else False, "private": False, "disabled": False,
                         "tags": [], "downloads": 0, "likes": 0})  # fmt: skip

    def _dataset(self, repo_id: str, revision: str | None) -> Repo | None:
        """The dataset repository at ``revision`` (main or its commit), or None once the error is answered."""
        repo = self.owner.datasets.get(repo_id)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision is not None and unquote(revision) not in ("main", repo.commit):
            self._json(404, {"error": f"Invalid rev id: {unquote(revision)}"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _dataset_info(self, repo_id: str, revision: str | None) -> None:
        repo = self._dataset(repo_id, revision)
        if repo is None:
            return
        siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(repo.files.items())]
        self._json(200, {"id": repo_id, "author": repo_id.split("/")[0], "sha": repo.commit, "siblings": siblings,
                         "gated": "manual" if repo.gated else False, "private": False, "disabled": False,
                         "tags": [], "downloads": 0, "likes": 0})  # fmt: skip

    def _dataset_file(self, repo_id: str, revision: str, filename: str) -> None:
        if self._dataset(repo_id, revision) is not None:
            self._file(repo_id, unquote(filename), self.owner.datasets, "datasets/")

    def _file(self, repo_id: str, filename: str, repos: dict[str, Repo] | None = None, kind: str = "") -> None:
        repo = (self.owner.repos if repos is None else repos).get(repo_id)
        if repo is None:
            return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if not self._authorized(repo):
            return self._json(401, {"error": f"Access to model {repo_id} is restricted."},
                              {"X-Error-Code": "GatedRepo"})  # fmt: skip
        data = repo.files.get(filename)
        if data is None:
            return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        start = 0
        if match := re.match(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(match.group(1))
        etag = hashlib.sha256(data).hexdigest()
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "HEAD":
            return
        key = f"{kind}{repo_id}/{filename}"
        self.owner.fetched.append(key)
        if key in self.owner.drop_once and not start:
            self.owner.drop_once.discard(key)
            self.wfile.write(data[: len(data) // 2])  # then the connection drops, mid-file
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(data[start:])
