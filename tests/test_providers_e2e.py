"""Each real provider end to end: the runner's app sends through the provider's fake server,
and the provider's signed webhooks come back through POST /v1/providers/{name}/webhook.

One kit per provider knows how to start its fake, configure it in postwright.yaml, read what
the fake received, and sign a webhook the way that provider does (Postmark HTTP Basic,
SendGrid ECDSA P-256, Mailgun HMAC, Resend Svix).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runner.core.records import Message, PendingSend, SendStatus
from runner.providers.mailgun import signature as mailgun_signature
from runner.providers.postmark import basic_authorization
from runner.providers.resend import secret_key, sign
from tests.fakes import serve
from tests.fakes.mailgun import FakeMailgun
from tests.fakes.postmark import FakePostmark
from tests.fakes.resend import FakeResend
from tests.fakes.sendgrid import FakeSendgrid
from tests.harness import Harness, write_repo

NAME = "mail"  # the provider's name in postwright.yaml
WEBHOOK = f"/v1/providers/{NAME}/webhook"
FROM = 'from: "Shop <news@shop.test>"'
ALICE = "alice@shop.test"
BOB = "bob@shop.test"
Signed = tuple[dict[str, str], bytes]


def automation(ident: str, trigger: str, subject: str) -> str:
    """An automation sending through the provider under test."""
    return (
        f"id: {ident}\nstatus: running\nprovider: {NAME}\ntrigger: {trigger}\n"
        f"email:\n  {FROM}\n  subject: {subject}\n  text: Hello\n"
    )


AUTOMATIONS = {
    "intro": automation("intro", "{type: event, event: signup}", "Welcome"),
    "thanks": automation("thanks", "{type: email, action: opened, automation: intro}", "Thanks"),
    "later": automation("later", "{type: event, event: ping}", "Ping"),
}


@dataclass(frozen=True)
class Received:
    """One message as the fake provider received it."""

    to: str
    subject: str
    provider_id: str | None  # what the fake answered, when it records it
    ours: str | None  # our message id, echoed in the provider's metadata field


class Kit(Protocol):
    """What the tests need to know about one provider."""

    kind: str
    replay_status: int

    def start(self, stack: ExitStack) -> str:
        """Start the fake; its base URL."""
        ...

    def config(self, base_url: str) -> str:
        """The provider's entry under `providers.mail` (YAML, indented 4)."""
        ...

    def environ(self, *, good_key: bool = True) -> dict[str, str]:
        """The secrets; `good_key=False` gives an API key the fake refuses."""
        ...

    def received(self) -> list[Received]:
        """Messages the fake accepted, in order."""
        ...

    def webhook(
        self, event: str, message: Message, now: datetime, *, forged: bool = False
    ) -> Signed:
        """Headers and body of a webhook reporting `event` ("open" or "hard_bounce")."""
        ...


def _json_headers() -> dict[str, str]:
    return {"content-type": "application/json"}


@dataclass
class PostmarkKit:
    """Postmark: server token; webhooks authenticated with HTTP Basic."""

    kind: str = "postmark"
    replay_status: int = 202  # a duplicate record is answered, and recorded once
    fake: FakePostmark = field(default_factory=lambda: FakePostmark(token="pm-token"))

    def start(self, stack: ExitStack) -> str:
        return stack.enter_context(serve(self.fake.app()))

    def config(self, base_url: str) -> str:
        return (
            "    type: postmark\n    server_token_env: PM_TOKEN\n"
            "    webhook_username_env: PM_HOOK_USER\n    webhook_password_env: PM_HOOK_PASSWORD\n"
            f"    base_url: {base_url}\n"
        )

    def environ(self, *, good_key: bool = True) -> dict[str, str]:
        token = "pm-token" if good_key else "pm-wrong"
        return {"PM_TOKEN": token, "PM_HOOK_USER": "hooks", "PM_HOOK_PASSWORD": "hook-secret"}

    def received(self) -> list[Received]:
        return [
            Received(m["To"], m["Subject"], m["MessageID"], m["Metadata"]["postwright_message_id"])
            for m in self.fake.accepted
        ]

    def webhook(
        self, event: str, message: Message, now: datetime, *, forged: bool = False
    ) -> Signed:
        metadata = {"postwright_message_id": message.id, "postwright_send_id": "x"}
        record: dict[str, Any] = {"MessageID": message.provider_message_id, "Metadata": metadata}
        if event == "open":
            record |= {"RecordType": "Open", "Recipient": message.to, "FirstOpen": True}
            record["ReceivedAt"] = now.isoformat()
        else:
            record |= {"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1}
            record |= {"Email": message.to, "Inactive": True, "BouncedAt": now.isoformat()}
        password = "wrong-secret" if forged else "hook-secret"
        headers = {**_json_headers(), "authorization": basic_authorization("hooks", password)}
        return headers, json.dumps(record).encode()


@dataclass
class SendgridKit:
    """SendGrid: bearer key; webhooks signed with ECDSA P-256 over timestamp + body."""

    kind: str = "sendgrid"
    replay_status: int = 202  # deduplicated per sg_event_id
    fake: FakeSendgrid = field(default_factory=lambda: FakeSendgrid(api_key="SG.test"))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def start(self, stack: ExitStack) -> str:
        return stack.enter_context(serve(self.fake.app()))

    def config(self, base_url: str) -> str:
        return (
            "    type: sendgrid\n    api_key_env: SG_KEY\n"
            f"    webhook_public_key_env: SG_HOOK_KEY\n    base_url: {base_url}\n"
        )

    def environ(self, *, good_key: bool = True) -> dict[str, str]:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        api_key = "SG.test" if good_key else "SG.wrong"
        return {"SG_KEY": api_key, "SG_HOOK_KEY": base64.b64encode(der).decode()}

    def received(self) -> list[Received]:
        found: list[Received] = []
        for body in self.fake.accepted:
            person = body["personalizations"][0]
            ours = person.get("custom_args", {}).get("postwright_message_id")
            found.append(
                Received(person["to"][0]["email"], body["subject"], body["x_message_id"], ours)
            )
        return found

    def webhook(
        self, event: str, message: Message, now: datetime, *, forged: bool = False
    ) -> Signed:
        item: dict[str, Any] = {
            "email": message.to,
            "timestamp": int(now.timestamp()),
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": f"{message.provider_message_id}.filterdrecv-5645d9c87f-1",
            "postwright_message_id": message.id,  # custom_args come back flattened
        }
        if event == "open":
            item |= {"event": "open", "useragent": "Mozilla/5.0"}
        else:
            item |= {"event": "bounce", "type": "bounce", "status": "5.1.1"}
            item |= {"bounce_classification": "Invalid Address", "reason": "550 no such user"}
        body = json.dumps([item]).encode()
        stamp = str(int(now.timestamp()))
        signer = ec.generate_private_key(ec.SECP256R1()) if forged else self.key
        der = signer.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            **_json_headers(),
            "x-twilio-email-event-webhook-signature": base64.b64encode(der).decode(),
            "x-twilio-email-event-webhook-timestamp": stamp,
        }
        return headers, body


@dataclass
class MailgunKit:
    """Mailgun: basic auth `api:KEY`, form bodies; webhooks HMAC over timestamp + token."""

    kind: str = "mailgun"
    replay_status: int = 406  # a token is single-use
    fake: FakeMailgun = field(
        default_factory=lambda: FakeMailgun(api_key="key-test", domain="mg.shop.test")
    )

    def start(self, stack: ExitStack) -> str:
        stack.enter_context(self.fake)
        return self.fake.base_url

    def config(self, base_url: str) -> str:
        return (
            "    type: mailgun\n    api_key_env: MG_KEY\n    domain: mg.shop.test\n"
            f"    webhook_signing_key_env: MG_SIGNING\n    base_url: {base_url}\n"
        )

    def environ(self, *, good_key: bool = True) -> dict[str, str]:
        return {"MG_KEY": "key-test" if good_key else "key-wrong", "MG_SIGNING": "mg-signing"}

    def received(self) -> list[Received]:
        return [
            Received(v["to"][0], v["subject"][0], None, v["v:postwright_message_id"][0])
            for v in self.fake.accepted
        ]

    def webhook(
        self, event: str, message: Message, now: datetime, *, forged: bool = False
    ) -> Signed:
        stamp, token = str(int(now.timestamp())), secrets.token_hex(25)
        data: dict[str, Any] = {
            "id": secrets.token_urlsafe(16),
            "timestamp": now.timestamp(),
            "recipient": message.to,
            "user-variables": {"postwright_message_id": message.id},
            "message": {"headers": {"message-id": message.provider_message_id}},
        }
        if event == "open":
            data["event"] = "opened"
        else:
            data |= {"event": "failed", "severity": "permanent", "reason": "bounce"}
        key = "not-the-key" if forged else "mg-signing"
        signed = {
            "timestamp": stamp,
            "token": token,
            "signature": mailgun_signature(key, stamp, token),
        }
        return _json_headers(), json.dumps({"signature": signed, "event-data": data}).encode()


@dataclass
class ResendKit:
    """Resend: bearer key with Idempotency-Key; webhooks signed the Svix way."""

    kind: str = "resend"
    replay_status: int = 200  # a Svix id seen before: "replayed", nothing recorded
    fake: FakeResend = field(default_factory=lambda: FakeResend(api_key="re_test"))
    secret: str = field(
        default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )

    def start(self, stack: ExitStack) -> str:
        stack.enter_context(self.fake)
        return self.fake.base_url

    def config(self, base_url: str) -> str:
        return (
            "    type: resend\n    api_key_env: RE_KEY\n"
            f"    webhook_secret_env: RE_HOOK\n    base_url: {base_url}\n"
        )

    def environ(self, *, good_key: bool = True) -> dict[str, str]:
        return {"RE_KEY": "re_test" if good_key else "re_wrong", "RE_HOOK": self.secret}

    def received(self) -> list[Received]:
        found: list[Received] = []
        for email in self.fake.delivered:
            tags = {t["name"]: t["value"] for t in email.get("tags", [])}
            found.append(
                Received(
                    email["to"][0], email["subject"], email["id"], tags.get("postwright_message_id")
                )
            )
        return found

    def webhook(
        self, event: str, message: Message, now: datetime, *, forged: bool = False
    ) -> Signed:
        data: dict[str, Any] = {
            "email_id": message.provider_message_id,
            "to": [message.to],
            "tags": {"postwright_message_id": message.id},
        }
        kind = "email.opened"
        if event != "open":
            kind = "email.bounced"
            data["bounce"] = {"type": "Permanent", "subType": "General", "message": "no such user"}
        payload = {"type": kind, "created_at": now.isoformat(), "data": data}
        body = json.dumps(payload).encode()
        svix_id, stamp = "msg_" + secrets.token_hex(12), str(int(now.timestamp()))
        key = secrets.token_bytes(32) if forged else secret_key(self.secret)
        headers = {
            **_json_headers(),
            "svix-id": svix_id,
            "svix-timestamp": stamp,
            "svix-signature": f"v1,{sign(key, svix_id, stamp, body)}",
        }
        return headers, body


KITS = [PostmarkKit, SendgridKit, MailgunKit, ResendKit]


@contextmanager
def running(kit: Kit, tmp_path: Path, *, good_key: bool = True) -> Iterator[Harness]:
    """The app over the three automations, its provider `mail` pointing at the kit's fake."""
    with ExitStack() as stack:
        base_url = kit.start(stack)
        config = f"providers:\n  {NAME}:\n{kit.config(base_url)}"
        repo = write_repo(tmp_path, AUTOMATIONS, config)
        yield stack.enter_context(Harness(repo, environ=kit.environ(good_key=good_key)))


def post(h: Harness, event_type: str, email: str) -> None:
    """POST one event and require 202."""
    response = h.post_event(event_type, email)
    assert response.status_code == 202, response.text


def messages(h: Harness, automation_id: str) -> list[Message]:
    """Stored messages of one automation, oldest first."""
    return list(reversed(h.read(lambda tx: tx.messages(100, automation_id))))


def sends(h: Harness, automation_id: str, *statuses: SendStatus) -> list[PendingSend]:
    """Sends of one automation in the given statuses."""
    return h.read(lambda tx: tx.pending_sends(automation_id, list(statuses), 100))


def deliver(h: Harness, signed: Signed) -> httpx.Response:
    """POST a webhook request exactly as built (raw bytes)."""
    headers, body = signed
    return h.http.post(WEBHOOK, content=body, headers=headers)


def suppression(h: Harness, email: str) -> str | None:
    """Why the subscriber is suppressed (None: not suppressed)."""
    subscriber = h.read(lambda tx: tx.subscriber(email))
    assert subscriber is not None
    return subscriber.suppressed


def stats(h: Harness, automation_id: str) -> dict[str, Any]:
    """The automation's counters."""
    response = h.http.get(f"/v1/automations/{automation_id}/stats")
    assert response.status_code == 200, response.text
    counters: dict[str, Any] = response.json()["stats"]
    return counters


@pytest.mark.parametrize("make", KITS, ids=lambda k: k.kind)
def test_send_webhooks_trigger_stats_suppression(make: type[Kit], tmp_path: Path) -> None:
    kit = make()
    with running(kit, tmp_path) as h:
        post(h, "signup", ALICE)
        post(h, "signup", BOB)
        h.drain()

        # the fake received both, and the stored messages carry the provider's ids
        stored = {m.to: m for m in messages(h, "intro")}
        received = {r.to: r for r in kit.received()}
        assert sorted(received) == [ALICE, BOB]
        for email, message in stored.items():
            assert received[email].subject == "Welcome"
            assert received[email].ours == message.id
            assert message.provider == NAME and message.provider_type == kit.kind
            assert message.provider_message_id
            assert message.provider_message_id != message.id
            if received[email].provider_id is not None:
                assert message.provider_message_id == received[email].provider_id
        if kit.kind == "mailgun":  # the fake answers `<...@domain>`; the id is kept without <>
            assert all(m.provider_message_id.endswith("@mg.shop.test") for m in stored.values())  # type: ignore[union-attr]

        # a signed open drives the email trigger and the stats
        opened = kit.webhook("open", stored[ALICE], h.clock.now())
        answer = deliver(h, opened)
        assert answer.status_code == 202, answer.text
        assert [r["status"] for r in answer.json()["results"]] == ["stored"]
        h.drain()
        assert [m.to for m in messages(h, "thanks")] == [ALICE]
        assert [r.subject for r in kit.received()].count("Thanks") == 1
        counters = stats(h, "intro")
        assert (counters["opened"], counters["unique_openers"], counters["sent"]) == (1, 1, 2)

        # the same request again has no second effect
        replay = deliver(h, opened)
        assert replay.status_code == kit.replay_status, replay.text
        if kit.replay_status == 202:
            assert [r["status"] for r in replay.json()["results"]] == ["duplicate"]
        else:
            assert replay.json()["error"] == "replayed"
        h.drain()
        assert [m.to for m in messages(h, "thanks")] == [ALICE]
        assert stats(h, "intro")["opened"] == 1

        # a wrong signature (or password) is refused and records nothing
        forged = kit.webhook("hard_bounce", stored[BOB], h.clock.now(), forged=True)
        assert deliver(h, forged).status_code == 401
        assert suppression(h, BOB) is None

        # a hard bounce suppresses the subscriber: a later trigger is cancelled `suppressed`
        bounced = deliver(h, kit.webhook("hard_bounce", stored[BOB], h.clock.now()))
        assert bounced.status_code == 202, bounced.text
        h.drain()
        assert suppression(h, BOB) == "bounced"
        assert stats(h, "intro")["bounced_hard"] == 1
        post(h, "ping", BOB)
        post(h, "ping", ALICE)
        h.drain()
        assert [(s.email, s.reason) for s in sends(h, "later", SendStatus.CANCELLED)] == [
            (BOB, "suppressed")
        ]
        assert [m.to for m in messages(h, "later")] == [ALICE]


@pytest.mark.parametrize("make", KITS, ids=lambda k: k.kind)
def test_refused_credentials_pause_the_provider(make: type[Kit], tmp_path: Path) -> None:
    kit = make()
    with running(kit, tmp_path, good_key=False) as h:
        post(h, "signup", ALICE)
        h.drain()
        assert kit.received() == []
        assert sends(h, "intro", SendStatus.FAILED) == []
        [pending] = sends(h, "intro", SendStatus.PENDING)
        assert pending.email == ALICE
        assert pending.due_at > h.clock.now()  # held until the provider is probed again
        metrics = h.http.get("/metrics").text
        assert f'postwright_provider_paused{{provider="{NAME}"}} 1.0' in metrics


def test_resend_timeout_is_retried_with_the_same_key_and_delivered_once(tmp_path: Path) -> None:
    kit = ResendKit()
    with running(kit, tmp_path) as h:
        assert h.worker is not None
        providers = h.worker.providers
        assert providers.client is not None
        providers.client.timeout = httpx.Timeout(0.5)  # the fake holds longer than this
        hold = kit.fake.slow_next()
        post(h, "signup", ALICE)
        h.drain()
        assert hold.arrived.is_set()
        [pending] = sends(h, "intro", SendStatus.PENDING)
        assert messages(h, "intro") == []
        hold.release.set()  # the provider finishes the first request after we gave up
        assert hold.finished.wait(10)
        assert len(kit.fake.delivered) == 1

        h.advance(timedelta(hours=2))
        h.drain()
        assert kit.fake.keys_seen == [f"postwright-{pending.id}"] * 2
        assert len(kit.fake.delivered) == 1  # Resend answered the first outcome again
        [message] = messages(h, "intro")
        assert message.provider_message_id == kit.fake.delivered[0]["id"]
        assert [s.id for s in sends(h, "intro", SendStatus.SENT)] == [pending.id]
