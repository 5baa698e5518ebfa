"""Double opt-in for email: the pure rules and the words.

A request appends a ``pending`` record (channel ``email``, source ``double_opt_in``) and mails a
signed link (:mod:`consentry.consent.links`, kind ``confirm``) naming that record. The customer
opens the link, presses the button, and a ``granted`` record is appended whose actor names the
pending record. Rules here:

- which address a confirmation goes to (:func:`choose_address`);
- a subject whose grant is in force is not asked again (:func:`already_granted`);
- what a link can still do (:func:`outcome`): a refusal of the purpose on ``email`` or ``any``
  recorded after the pending record closes it (``superseded``); a grant made from it means
  ``already_confirmed``; otherwise it is ``open``;
- the proof of the confirmation (truncated IP, user agent, pending record id);
- the mail and the page, in en, fr, de, es, it, nl and pt (other languages get English).

No SQL, no HTTP, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from consentry.consent.models import (
    ANY_CHANNEL,
    GRANTED,
    PENDING,
    REFUSALS,
    ConsentRecord,
    CurrentState,
    ProofIn,
    truncate_ip,
)
from consentry.profiles.models import normalize_email

DEFAULT_PURPOSE = "marketing.communications.email"
CHANNEL = "email"
SOURCE = "double_opt_in"
ACTOR_PREFIX = "double_opt_in:"  # + the pending record's id: the actor of a confirmation grant
MAX_USER_AGENT = 512

# What a link can still do.
OPEN = "open"
ALREADY_CONFIRMED = "already_confirmed"
SUPERSEDED = "superseded"

_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")


class DoubleOptInIn(BaseModel):
    """A request to confirm a subject's email subscription by double opt-in."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, max_length=36)
    email: str | None = Field(
        None,
        max_length=512,
        description="Names the subject, or (with profile_id / user_id) which of its addresses "
        "to write to. It must be an address of the profile.",
    )
    user_id: str | None = Field(None, max_length=512)
    purpose: str = Field(DEFAULT_PURPOSE, max_length=100)
    notice_version: str | None = Field(None, max_length=100)
    language: str | None = Field(
        None, max_length=35, description="BCP 47 tag; en, fr, de, es, it, nl, pt (else en)."
    )
    proof: ProofIn | None = Field(None, description="How the subject asked (the sign-up form).")


# --- language -----------------------------------------------------------------------------------


def is_language_tag(tag: str) -> bool:
    """Whether ``tag`` looks like a BCP 47 language tag (``fr``, ``pt-BR``, ``de_CH``)."""
    return bool(_TAG.match(tag))


def language_of(tag: str | None) -> str:
    """The catalog language for a tag: its primary subtag when we have it, else English."""
    if not tag or not is_language_tag(tag):
        return "en"
    primary = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    return primary if primary in CATALOG else "en"


def claimed_language(token: str) -> str:
    """The language a token claims, read without checking it: only to word an error page."""
    try:
        body = token.split(".", 1)[0]
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return language_of(str(payload["x"]["l"]))
    except (binascii.Error, ValueError, KeyError, TypeError, IndexError):
        return "en"


# --- the link -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a confirmation link names besides its subject: the pending record, the purpose and
    the language of the mail."""

    record_id: str
    purpose: str
    language: str


def link_extra(record_id: str, purpose: str, language: str) -> dict[str, str]:
    """The extra fields signed into a confirmation link."""
    return {"r": record_id, "p": purpose, "l": language}


def claims_of(extra: Mapping[str, Any]) -> LinkClaims:
    """The claims of a verified link; ValueError when a field is missing."""
    record_id, purpose, language = extra.get("r"), extra.get("p"), extra.get("l")
    if not isinstance(record_id, str) or not isinstance(purpose, str):
        raise ValueError("a confirmation link names its record and purpose")
    return LinkClaims(
        record_id, purpose, language_of(language if isinstance(language, str) else "")
    )


def confirm_url(public_url: str, token: str) -> str:
    """Where a confirmation link points: ``{public_url}/c/{token}``."""
    return f"{public_url.rstrip('/')}/c/{token}"


# --- addresses ----------------------------------------------------------------------------------


def profile_addresses(
    traits: Mapping[str, Any], identifiers: Iterable[Mapping[str, Any]]
) -> list[str]:
    """A profile's email addresses, normalised: the current ``email`` trait first, then the
    email identifiers, most recently seen first."""
    found: list[str] = []
    current = normalize_email(traits.get("email"))
    if current:
        found.append(current)
    emails = [i for i in identifiers if i.get("type") == "email"]
    emails.sort(key=_seen, reverse=True)
    for identifier in emails:
        value = normalize_email(identifier.get("value"))
        if value and value not in found:
            found.append(value)
    return found


def _seen(identifier: Mapping[str, Any]) -> float:
    seen = identifier.get("first_seen")
    return seen.timestamp() if isinstance(seen, datetime) else 0.0


def choose_address(addresses: Sequence[str], wanted: str | None) -> str | None:
    """The address to write to: ``wanted`` when it is one of the profile's, else (when none is
    wanted) the profile's first; None when there is none to use."""
    if wanted is None:
        return addresses[0] if addresses else None
    normal = normalize_email(wanted)
    return normal if normal is not None and normal in addresses else None


# --- what a request and a link may do ----------------------------------------------------------


def already_granted(deciding: CurrentState | None, at: datetime) -> bool:
    """Whether the state deciding email for the purpose is a grant in force: asking again would
    put a pending record in front of it and stop mail the subject agreed to."""
    if deciding is None or deciding.state != GRANTED:
        return False
    return deciding.expires_at is None or deciding.expires_at > at


def is_request(record: ConsentRecord) -> bool:
    """Whether ``record`` is a pending record made by a double opt-in request."""
    return record.state == PENDING and record.source == SOURCE and record.channel == CHANNEL


def confirms(record: ConsentRecord, pending_id: str) -> bool:
    """Whether ``record`` is the grant made from the link of ``pending_id``."""
    if record.state != GRANTED:
        return False
    proof = record.proof or {}
    return record.actor == ACTOR_PREFIX + pending_id or proof.get("pending_record_id") == pending_id


def outcome(pending: ConsentRecord, later: Iterable[ConsentRecord]) -> str:
    """What the link of ``pending`` can still do, given the records of the subject's unified
    profile for its purpose: ``superseded`` when a denial or withdrawal on ``email`` or ``any``
    was recorded after it (and did not happen before it), ``already_confirmed`` when its grant
    exists, else ``open``."""
    after = [r for r in later if r.seq > pending.seq and r.purpose == pending.purpose]
    if any(
        r.state in REFUSALS
        and r.channel in (CHANNEL, ANY_CHANNEL)
        and r.occurred_at >= pending.occurred_at
        for r in after
    ):
        return SUPERSEDED
    if any(confirms(r, pending.id) for r in after):
        return ALREADY_CONFIRMED
    return OPEN


# --- proof --------------------------------------------------------------------------------------


def request_proof(base: Mapping[str, str] | None, *, address: str, language: str) -> dict[str, str]:
    """The proof of a pending record: how the subject asked (the caller's proof), the address
    the confirmation goes to and the language it is written in (a resend uses both)."""
    return {**(base or {}), "email": address, "language": language}


def confirmation_proof(
    *, pending_id: str, ip: str | None, user_agent: str | None
) -> dict[str, str]:
    """The proof of a confirmation: the pending record's id, the client's network (IPv4 /24,
    IPv6 /48) and its user agent (cut at 512 characters)."""
    proof = {"pending_record_id": pending_id}
    if ip:
        try:
            proof["ip"] = truncate_ip(ip)
        except ValueError:
            pass  # not an address (a test client, a unix socket): nothing to keep
    if user_agent:
        proof["user_agent"] = user_agent[:MAX_USER_AGENT]
    return proof


# --- words --------------------------------------------------------------------------------------

CATALOG: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Please confirm your subscription to {brand}",
        "greeting": "Hello,",
        "intro": "Someone, probably you, asked to receive emails from {brand} at this address.",
        "action": "To confirm, open this link and press the button on the page:",
        "button": "Confirm my subscription",
        "expires": "The link works until {expires}.",
        "ignore": "If you did not ask for this, ignore this email. You will not receive our "
        "emails.",
        "page_title": "Confirm your subscription",
        "page_text": "Do you want to receive emails from {brand}?",
        "page_button": "Yes, confirm",
        "page_note": "You can unsubscribe at any time.",
        "done_title": "Thank you, your subscription is confirmed",
        "done_text": "You will receive emails from {brand}. You can unsubscribe at any time.",
        "already_title": "Already confirmed",
        "already_text": "This subscription was already confirmed. There is nothing more to do.",
        "expired_title": "This link has expired",
        "expired_text": "Confirmation links work for a limited time. Sign up again to get a "
        "new one.",
        "invalid_title": "This link is not valid",
        "invalid_text": "The link may be incomplete. Copy the whole link from the email into "
        "your browser.",
        "superseded_title": "This request is no longer open",
        "superseded_text": "You unsubscribed after this request, so it cannot be confirmed any "
        "more. Sign up again if you want our emails.",
    },
    "fr": {
        "subject": "Merci de confirmer votre abonnement à {brand}",
        "greeting": "Bonjour,",
        "intro": "Quelqu'un, sans doute vous, a demandé à recevoir les e-mails de {brand} à "
        "cette adresse.",
        "action": "Pour confirmer, ouvrez ce lien et appuyez sur le bouton de la page :",
        "button": "Confirmer mon abonnement",
        "expires": "Le lien est valable jusqu'au {expires}.",
        "ignore": "Si vous n'avez rien demandé, ignorez cet e-mail. Vous ne recevrez pas nos "
        "e-mails.",
        "page_title": "Confirmez votre abonnement",
        "page_text": "Voulez-vous recevoir les e-mails de {brand} ?",
        "page_button": "Oui, je confirme",
        "page_note": "Vous pourrez vous désabonner à tout moment.",
        "done_title": "Merci, votre abonnement est confirmé",
        "done_text": "Vous recevrez les e-mails de {brand}. Vous pouvez vous désabonner à tout "
        "moment.",
        "already_title": "Déjà confirmé",
        "already_text": "Cet abonnement a déjà été confirmé. Vous n'avez rien d'autre à faire.",
        "expired_title": "Ce lien a expiré",
        "expired_text": "Les liens de confirmation sont valables pour une durée limitée. "
        "Inscrivez-vous à nouveau pour en recevoir un autre.",
        "invalid_title": "Ce lien n'est pas valide",
        "invalid_text": "Le lien est peut-être incomplet. Copiez le lien entier de l'e-mail dans "
        "votre navigateur.",
        "superseded_title": "Cette demande n'est plus ouverte",
        "superseded_text": "Vous vous êtes désabonné après cette demande : elle ne peut plus être "
        "confirmée. Inscrivez-vous à nouveau si vous voulez nos e-mails.",
    },
    "de": {
        "subject": "Bitte bestätigen Sie Ihr Abonnement bei {brand}",
        "greeting": "Hallo,",
        "intro": "Jemand, wahrscheinlich Sie, möchte an diese Adresse E-Mails von {brand} "
        "erhalten.",
        "action": "Zum Bestätigen öffnen Sie diesen Link und klicken Sie auf der Seite auf die "
        "Schaltfläche:",
        "button": "Abonnement bestätigen",
        "expires": "Der Link gilt bis {expires}.",
        "ignore": "Wenn Sie das nicht angefordert haben, ignorieren Sie diese E-Mail. Sie "
        "erhalten dann keine E-Mails von uns.",
        "page_title": "Abonnement bestätigen",
        "page_text": "Möchten Sie E-Mails von {brand} erhalten?",
        "page_button": "Ja, bestätigen",
        "page_note": "Sie können sich jederzeit abmelden.",
        "done_title": "Danke, Ihr Abonnement ist bestätigt",
        "done_text": "Sie erhalten nun E-Mails von {brand}. Sie können sich jederzeit abmelden.",
        "already_title": "Bereits bestätigt",
        "already_text": "Dieses Abonnement wurde bereits bestätigt. Sie müssen nichts weiter tun.",
        "expired_title": "Dieser Link ist abgelaufen",
        "expired_text": "Bestätigungslinks gelten nur für begrenzte Zeit. Melden Sie sich erneut "
        "an, um einen neuen zu erhalten.",
        "invalid_title": "Dieser Link ist ungültig",
        "invalid_text": "Der Link ist vielleicht unvollständig. Kopieren Sie den ganzen Link aus "
        "der E-Mail in Ihren Browser.",
        "superseded_title": "Diese Anfrage ist nicht mehr offen",
        "superseded_text": "Sie haben sich nach dieser Anfrage abgemeldet, daher kann sie nicht "
        "mehr bestätigt werden. Melden Sie sich erneut an, wenn Sie unsere E-Mails möchten.",
    },
    "es": {
        "subject": "Confirme su suscripción a {brand}",
        "greeting": "Hola:",
        "intro": "Alguien, probablemente usted, ha pedido recibir correos de {brand} en esta "
        "dirección.",
        "action": "Para confirmarlo, abra este enlace y pulse el botón de la página:",
        "button": "Confirmar mi suscripción",
        "expires": "El enlace es válido hasta el {expires}.",
        "ignore": "Si no lo ha pedido, ignore este correo. No recibirá nuestros correos.",
        "page_title": "Confirme su suscripción",
        "page_text": "¿Quiere recibir correos de {brand}?",
        "page_button": "Sí, confirmar",
        "page_note": "Puede darse de baja en cualquier momento.",
        "done_title": "Gracias, su suscripción está confirmada",
        "done_text": "Recibirá correos de {brand}. Puede darse de baja en cualquier momento.",
        "already_title": "Ya confirmada",
        "already_text": "Esta suscripción ya estaba confirmada. No tiene que hacer nada más.",
        "expired_title": "Este enlace ha caducado",
        "expired_text": "Los enlaces de confirmación son válidos durante un tiempo limitado. "
        "Vuelva a suscribirse para recibir uno nuevo.",
        "invalid_title": "Este enlace no es válido",
        "invalid_text": "Puede que el enlace esté incompleto. Copie el enlace completo del correo "
        "en su navegador.",
        "superseded_title": "Esta solicitud ya no está abierta",
        "superseded_text": "Se dio de baja después de esta solicitud, así que ya no se puede "
        "confirmar. Vuelva a suscribirse si quiere recibir nuestros correos.",
    },
    "it": {
        "subject": "Conferma la tua iscrizione a {brand}",
        "greeting": "Ciao,",
        "intro": "Qualcuno, probabilmente tu, ha chiesto di ricevere le email di {brand} a "
        "questo indirizzo.",
        "action": "Per confermare, apri questo link e premi il pulsante nella pagina:",
        "button": "Conferma la mia iscrizione",
        "expires": "Il link è valido fino al {expires}.",
        "ignore": "Se non l'hai chiesto tu, ignora questa email. Non riceverai le nostre email.",
        "page_title": "Conferma la tua iscrizione",
        "page_text": "Vuoi ricevere le email di {brand}?",
        "page_button": "Sì, confermo",
        "page_note": "Puoi annullare l'iscrizione in qualsiasi momento.",
        "done_title": "Grazie, la tua iscrizione è confermata",
        "done_text": "Riceverai le email di {brand}. Puoi annullare l'iscrizione in qualsiasi "
        "momento.",
        "already_title": "Già confermata",
        "already_text": "Questa iscrizione era già confermata. Non devi fare altro.",
        "expired_title": "Questo link è scaduto",
        "expired_text": "I link di conferma valgono per un tempo limitato. Iscriviti di nuovo per "
        "riceverne uno nuovo.",
        "invalid_title": "Questo link non è valido",
        "invalid_text": "Il link potrebbe essere incompleto. Copia l'intero link dall'email nel "
        "browser.",
        "superseded_title": "Questa richiesta non è più aperta",
        "superseded_text": "Hai annullato l'iscrizione dopo questa richiesta, quindi non può più "
        "essere confermata. Iscriviti di nuovo se vuoi ricevere le nostre email.",
    },
    "nl": {
        "subject": "Bevestig je inschrijving bij {brand}",
        "greeting": "Hallo,",
        "intro": "Iemand, waarschijnlijk jij, heeft gevraagd om e-mails van {brand} op dit "
        "adres te ontvangen.",
        "action": "Open deze link en klik op de knop op de pagina om te bevestigen:",
        "button": "Mijn inschrijving bevestigen",
        "expires": "De link werkt tot {expires}.",
        "ignore": "Heb je dit niet gevraagd? Negeer dan deze e-mail. Je ontvangt dan geen "
        "e-mails van ons.",
        "page_title": "Bevestig je inschrijving",
        "page_text": "Wil je e-mails van {brand} ontvangen?",
        "page_button": "Ja, bevestigen",
        "page_note": "Je kunt je altijd weer uitschrijven.",
        "done_title": "Bedankt, je inschrijving is bevestigd",
        "done_text": "Je ontvangt e-mails van {brand}. Je kunt je altijd weer uitschrijven.",
        "already_title": "Al bevestigd",
        "already_text": "Deze inschrijving was al bevestigd. Je hoeft niets meer te doen.",
        "expired_title": "Deze link is verlopen",
        "expired_text": "Bevestigingslinks werken een beperkte tijd. Schrijf je opnieuw in om "
        "een nieuwe te krijgen.",
        "invalid_title": "Deze link is niet geldig",
        "invalid_text": "De link is misschien onvolledig. Kopieer de hele link uit de e-mail naar "
        "je browser.",
        "superseded_title": "Dit verzoek staat niet meer open",
        "superseded_text": "Je hebt je na dit verzoek uitgeschreven, dus het kan niet meer worden "
        "bevestigd. Schrijf je opnieuw in als je onze e-mails wilt ontvangen.",
    },
    "pt": {
        "subject": "Confirme a sua inscrição em {brand}",
        "greeting": "Olá,",
        "intro": "Alguém, provavelmente você, pediu para receber emails de {brand} neste endereço.",
        "action": "Para confirmar, abra este link e clique no botão da página:",
        "button": "Confirmar a minha inscrição",
        "expires": "O link é válido até {expires}.",
        "ignore": "Se não pediu isto, ignore este email. Não receberá os nossos emails.",
        "page_title": "Confirme a sua inscrição",
        "page_text": "Quer receber emails de {brand}?",
        "page_button": "Sim, confirmar",
        "page_note": "Pode cancelar a inscrição a qualquer momento.",
        "done_title": "Obrigado, a sua inscrição está confirmada",
        "done_text": "Vai receber emails de {brand}. Pode cancelar a inscrição a qualquer momento.",
        "already_title": "Já confirmada",
        "already_text": "Esta inscrição já estava confirmada. Não precisa de fazer mais nada.",
        "expired_title": "Este link expirou",
        "expired_text": "Os links de confirmação são válidos durante um tempo limitado. "
        "Inscreva-se de novo para receber um novo.",
        "invalid_title": "Este link não é válido",
        "invalid_text": "O link pode estar incompleto. Copie o link completo do email para o seu "
        "navegador.",
        "superseded_title": "Este pedido já não está aberto",
        "superseded_text": "Cancelou a inscrição depois deste pedido, por isso já não pode ser "
        "confirmado. Inscreva-se de novo se quiser receber os nossos emails.",
    },
}
LANGUAGES = tuple(CATALOG)


def words(language: str) -> dict[str, str]:
    """The catalog of ``language`` (English when we do not have it)."""
    return CATALOG.get(language, CATALOG["en"])


def when(value: datetime) -> str:
    """A time as customers read it in any language: ``2026-05-01 12:30 UTC``."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class Mail:
    """The subject, text and HTML of a confirmation mail."""

    subject: str
    text: str
    html: str


def compose(*, language: str, brand: str, url: str, expires_at: datetime) -> Mail:
    """The confirmation mail in ``language``: plain words, the link in both parts."""
    w = words(language)
    brand = " ".join(brand.split()) or "us"
    values = {"brand": brand, "expires": when(expires_at)}
    intro, expires = w["intro"].format(**values), w["expires"].format(**values)
    text = "\n\n".join([w["greeting"], intro, f"{w['action']}\n{url}", expires, w["ignore"]])
    e = html.escape
    link = e(url, quote=True)
    body = (
        f'<!DOCTYPE html>\n<html lang="{e(language)}">\n<head><meta charset="utf-8">'
        f"<title>{e(w['subject'].format(**values))}</title></head>\n"
        '<body style="font-family: sans-serif; line-height: 1.5; color: #1f2328;">\n'
        f"<p>{e(w['greeting'])}</p>\n<p>{e(intro)}</p>\n<p>{e(w['action'])}</p>\n"
        f'<p><a href="{link}" style="display: inline-block; padding: 10px 18px; '
        'background: #1f6feb; color: #ffffff; text-decoration: none; border-radius: 6px;">'
        f"{e(w['button'])}</a></p>\n"
        f'<p style="font-size: 90%; word-break: break-all;"><a href="{link}">{link}</a></p>\n'
        f"<p>{e(expires)}</p>\n<p>{e(w['ignore'])}</p>\n</body>\n</html>\n"
    )
    return Mail(subject=w["subject"].format(**values), text=text + "\n", html=body)
