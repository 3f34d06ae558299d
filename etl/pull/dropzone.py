"""A source's drop zone as a file system: SFTP (sshfs), S3-compatible (s3fs) or a local folder.

Opened from the mapping's `delivery:` and the connection's credentials; the one place that
knows how each kind is reached. Only the top of the drop zone is listed (no subfolders: the pull names
those it passed over), links and folders are not exports. Each opening is a fresh connection (fsspec
caches file systems by their arguments; a cached one would keep a dropped connection), closed when the
block ends.

SFTP host keys are checked: against the connection's `host_key` extra (a public key), or its
`known_hosts` file, else `~/.ssh/known_hosts`; only `no_host_key_check: true` turns checking off.
"""

from __future__ import annotations

import base64
import errno
import os
import posixpath
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, BinaryIO, NamedTuple, cast
from urllib.parse import unquote, urlsplit

import fsspec
from fsspec import AbstractFileSystem
from pydantic import BaseModel, ConfigDict

from etl.pull.credentials import Credentials, CredentialsError
from etl.transform.mapping import Delivery

CONNECT_TIMEOUT_SECONDS = 20.0


class RemoteFile(BaseModel):
    """One file in a drop zone, as listed: `version` is its ETag (S3) or modification time."""

    model_config = ConfigDict(frozen=True)

    path: str
    name: str
    size: int
    version: str
    modified: datetime | None = None


class Listing(NamedTuple):
    """The top of a drop zone, each by name: its regular files, the names of its links and of its folders (not
    read: a sender who puts a delivery in a subfolder is told so), dotfolders left out as dotfiles are, and of
    what is none of these (a named pipe, socket or device: never read, said when named as an export)."""

    files: list[RemoteFile]
    links: list[str]
    folders: list[str]
    others: list[str]


class RemoteRefused(ValueError):
    """A listed file that must not be read as it now is (a link or a pipe put in its place)."""


class Gone(FileNotFoundError):
    """A listed file no longer there when opened (taken back by its sender, deleted to be uploaded again): not
    found, and a fresh look finds nothing either (one found after all is a transport's error)."""


class DropZone:
    """An open drop zone: list, read and (when the mapping says so) delete its files."""

    def __init__(self, delivery: Delivery, filesystem: AbstractFileSystem, root: str) -> None:
        self.delivery = delivery
        self.filesystem = filesystem
        self.root = root.rstrip("/") or "/"

    @property
    def kind(self) -> str:
        return self.delivery.kind

    def list_files(self) -> list[RemoteFile]:
        """The regular files at the top of the drop zone, by name."""
        return self.list_entries()[0]

    def list_entries(self) -> Listing:
        """The regular files at the top of the drop zone, the names of the links and of the folders there."""
        self.filesystem.invalidate_cache()  # a poll must see what arrived since the last one
        files, links, folders, others = [], [], [], []
        try:
            entries = self.filesystem.ls(self.root, detail=True)
        except FileNotFoundError:
            if self.kind != "s3":
                raise  # a missing folder is a wrong url: said, not taken for an empty drop zone
            entries = []  # an S3 prefix exists only while it holds objects: empty, not missing
        for entry in entries:
            if entry.get("type") == "link" or entry.get("islink"):  # sshfs: type 'link'; local: islink
                links.append(posixpath.basename(str(entry["name"]).rstrip("/")))
            elif entry.get("type") == "file":
                files.append(_remote(entry))
            elif entry.get("type") == "directory":  # not read; S3: a prefix below the drop zone's
                name = posixpath.basename(str(entry["name"]).rstrip("/"))
                if name and not name.startswith("."):  # a server's own (.ssh, .snapshot): no sender's
                    folders.append(name)
            else:  # fsspec's 'other': a named pipe, socket or device
                others.append(posixpath.basename(str(entry["name"]).rstrip("/")))
        return Listing(sorted(files, key=lambda f: f.name), sorted(links), sorted(folders), sorted(others))

    def stat(self, remote: RemoteFile) -> RemoteFile | None:
        """The file at `remote`'s path as it is now (None when gone or no longer a regular file)."""
        self.filesystem.invalidate_cache()
        try:
            entry = self.filesystem.info(remote.path)
        except FileNotFoundError:
            return None
        return _remote(entry) if entry.get("type") == "file" and not entry.get("islink") else None

    def open(self, remote: RemoteFile) -> BinaryIO:
        """The listed file, opened; Gone when it is no longer there."""
        try:
            return self._open(remote)
        except FileNotFoundError:
            if self.stat(remote) is not None:
                raise  # there after all: a transport's error, worth another attempt
            raise Gone(f"{remote.name} was removed after it was listed") from None

    def _open(self, remote: RemoteFile) -> BinaryIO:
        if self.kind == "local":  # the listing left links out; one swapped in since must not be followed
            try:
                fd = os.open(remote.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RemoteRefused(f"{remote.name} became a link after it was listed: not followed") from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise RemoteRefused(f"{remote.name} is no longer a regular file")
            return os.fdopen(fd, "rb")
        return cast(BinaryIO, self.filesystem.open(remote.path, "rb"))

    def read_text(self, remote: RemoteFile, limit: int = 1 << 20) -> str:
        """A small text file (a checksum sidecar or manifest); Gone when it is no longer there."""
        with self.open(remote) as handle:
            return handle.read(limit).decode("utf-8", errors="replace")

    def delete(self, remote: RemoteFile) -> None:
        self.filesystem.rm_file(remote.path)

    def close(self) -> None:
        _close(self.filesystem)


def _remote(entry: dict[str, Any]) -> RemoteFile:
    path = str(entry["name"])
    modified = _modified(entry)
    version = str(entry.get("ETag") or entry.get("etag") or (modified.isoformat() if modified else ""))
    return RemoteFile(path=path, name=posixpath.basename(path.rstrip("/")), size=int(entry["size"]),
                      version=version.strip('"'), modified=modified)


def _modified(entry: dict[str, Any]) -> datetime | None:
    value = entry.get("mtime", entry.get("LastModified"))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):  # a time no calendar holds (a sender may set any): this file
            return (datetime.max if value > 0 else datetime.min).replace(tzinfo=UTC)  # waits, not the listing fails
    return None


def _close(filesystem: AbstractFileSystem) -> None:
    """Close a connection now rather than when the garbage collector finds it."""
    finalize = getattr(type(filesystem), "_finalize", None)
    if finalize is None or not hasattr(filesystem, "_stack"):
        return  # s3fs and the local file system hold nothing that must be closed at once
    with suppress(Exception):  # sshfs: closes its SFTP channels and SSH connection (a dropped one: nothing to do)
        finalize(filesystem.loop, filesystem._pool, filesystem._stack)


def local_root(url: str) -> str:
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else url


def connect(delivery: Delivery, credentials: Credentials | None, *, source_id: str) -> DropZone:
    """The drop zone, connected with the credentials; the caller closes it."""
    filesystem, root = _filesystem(delivery, credentials, source_id)
    return DropZone(delivery, filesystem, root)


@contextmanager
def opened(delivery: Delivery, credentials: Credentials | None, *, source_id: str) -> Iterator[DropZone]:
    """The drop zone, connected with the credentials, closed when the block ends."""
    zone = connect(delivery, credentials, source_id=source_id)
    try:
        yield zone
    finally:
        zone.close()


def _filesystem(delivery: Delivery, credentials: Credentials | None,
                source_id: str) -> tuple[AbstractFileSystem, str]:
    if delivery.kind == "local":
        return fsspec.filesystem("file", skip_instance_cache=True), local_root(delivery.url)
    parts = urlsplit(delivery.url)
    if delivery.kind == "s3":
        return fsspec.filesystem("s3", **_s3_options(delivery, credentials)), f"{parts.netloc}{parts.path}".rstrip("/")
    if credentials is None:
        raise CredentialsError(f"{source_id}: the SFTP drop zone needs the credentials of connection "
                               f"'{delivery.connection}'")
    options = _sftp_options(parts.hostname or "", parts.port, parts.username, credentials, source_id)
    import asyncssh

    try:
        return fsspec.filesystem("sftp", **options), unquote(parts.path) or "/"
    except (PermissionError, asyncssh.PermissionDenied, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        # Trying again would be refused again (sshfs says PermissionError): said at once, naming the connection.
        raise CredentialsError(f"{source_id}: the SFTP server refused the credentials of connection "
                               f"'{delivery.connection}' ({type(exc).__name__})") from None


def _s3_options(delivery: Delivery, credentials: Credentials | None) -> dict[str, Any]:
    options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    client: dict[str, Any] = {}
    endpoint = delivery.endpoint_url
    if credentials is not None:
        key = credentials.login or credentials.option("aws_access_key_id")
        secret = credentials.password.get_secret_value() if credentials.password else \
            credentials.option("aws_secret_access_key")
        if key:
            options["key"] = key
        if secret:
            options["secret"] = secret
        if token := credentials.option("aws_session_token"):
            options["token"] = token
        if region := credentials.option("region_name"):
            client["region_name"] = region
        endpoint = endpoint or credentials.option("endpoint_url")
    if endpoint:
        options["endpoint_url"] = endpoint
    if client:
        options["client_kwargs"] = client
    options["config_kwargs"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "retries": {"max_attempts": 1}}
    return options


def _sftp_options(host: str, url_port: int | None, url_user: str | None, credentials: Credentials,
                  source_id: str) -> dict[str, Any]:
    import asyncssh  # only an SFTP drop zone needs it

    options: dict[str, Any] = {"host": host, "port": url_port or credentials.port or 22,
                               "username": credentials.login or url_user, "skip_instance_cache": True,
                               "connect_timeout": CONNECT_TIMEOUT_SECONDS, "keepalive_interval": 15,
                               # A name that is not UTF-8 is listed (as a local folder lists it), so that the
                               # pull refuses that one file by name rather than failing the whole listing.
                               "sftp_client_kwargs": {"path_errors": "surrogateescape"}}
    if credentials.password is not None:
        options["password"] = credentials.password.get_secret_value()
    passphrase = credentials.option("private_key_passphrase")
    if (key_text := credentials.option("private_key")) is not None:
        try:
            options["client_keys"] = [asyncssh.import_private_key(str(key_text), passphrase)]
        except (asyncssh.KeyImportError, ValueError):
            raise CredentialsError(f"{source_id}: the private_key of its connection cannot be read") from None
    elif (key_file := credentials.option("key_file")) is not None:
        if not os.path.isfile(str(key_file)):
            raise CredentialsError(f"{source_id}: the key_file of its connection is not a file on this machine")
        _refuse_shared(str(key_file), 0o077, "key_file", "readable or writable by other accounts", "600", source_id)
        options["client_keys"] = [str(key_file)]
        if passphrase:
            options["passphrase"] = passphrase
    else:
        options["client_keys"] = None  # no key given: password only, not whatever ~/.ssh holds
    if (host_key := credentials.option("host_key")) is not None:
        options["known_hosts"] = ([_host_key(str(host_key), source_id)], [], [])
    elif (known := credentials.option("known_hosts")) is not None:
        if os.path.isfile(str(known)):  # one that is missing is said by asyncssh when it connects
            _refuse_shared(str(known), 0o022, "known_hosts", "writable by other accounts (any of them could "
                           "vouch for a server of its own)", "644", source_id)
        options["known_hosts"] = str(known)
    elif credentials.flag("no_host_key_check"):
        options["known_hosts"] = None
    else:
        options["known_hosts"] = ()  # asyncssh's default: ~/.ssh/known_hosts
    return options


def _refuse_shared(path: str, forbidden: int, what: str, why: str, chmod: str, source_id: str) -> None:
    """CredentialsError when a credentials file's mode has any of the `forbidden` bits, as ssh itself refuses
    a private key others can read. The path is not said: the message names the connection's extra."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & forbidden:
        raise CredentialsError(f"{source_id}: the {what} of its connection is {why} (mode {mode:04o}): "
                               f"chmod {chmod} that file")


def _host_key(text: str, source_id: str) -> Any:
    import asyncssh

    try:
        if " " in text.strip():  # "ssh-ed25519 AAAA... comment"
            return asyncssh.import_public_key(text.strip())
        # The base64 blob alone (Airflow's SFTP host_key): its wire form starts with the key type.
        raw = base64.b64decode(text.strip())
        algorithm = raw[4:4 + struct.unpack(">I", raw[:4])[0]].decode("ascii")
        return asyncssh.import_public_key(f"{algorithm} {text.strip()}")
    except (asyncssh.KeyImportError, ValueError, struct.error):
        raise CredentialsError(f"{source_id}: the host_key of its connection is not a public key") from None
