"""The victim's case page: number + PIN in, status, alerts and withdrawal out.

Server-rendered (Jinja2, templates in ``cases/templates``), in English and French, with no
external asset: no script, font or image is fetched from anywhere, so the page leaks
nothing to third parties and works without JavaScript. The routes are in
:mod:`rempart.service.api.cases`; this module only chooses the language and renders.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any, Final

from jinja2 import Environment, PackageLoader, select_autoescape

log = logging.getLogger("rempart.cases")

LANGS: Final = ("en", "fr")

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Your case",
        "intro": "Enter your case number and PIN to see whether copies of your images were "
        "found, and to withdraw your case.",
        "number": "Case number",
        "number_help": "It looks like RMP-XXXX-XXXX-XXXX.",
        "pin": "PIN",
        "pin_help": "The 8 digits you were given with your case number.",
        "show": "Show my case",
        "status_title": "Case {number}",
        "opened": "Opened on {date}.",
        "entries": "Hashes of your files being looked for: {n}.",
        "face": "Your face template is used to look for altered images of you.",
        "no_alerts": "No platform has found a copy so far.",
        "alerts_title": "Alerts",
        "alerts_intro": "A platform using Rempart found a copy matching what you submitted. "
        "We never see or keep the content itself.",
        "platform": "Platform",
        "when": "When",
        "how": "How it matched",
        "kind_hash_match": "a copy of one of your files",
        "kind_face": "your face, in an intimate or generated image",
        "notices_title": "Takedown notices",
        "notices_intro": "Removal requests made to platforms for you. Each one sent is "
        "reminded regularly until the content is removed.",
        "no_notices": "No notice has been sent yet.",
        "notice_kind": "Notice",
        "sent": "Sent",
        "deadline": "Deadline",
        "notice_status": "Status",
        "notice_takeitdown": "TAKE IT DOWN Act request",
        "notice_dsa": "EU DSA Article 16 notice",
        "notice_pharos": "Pharos report sheet",
        "notice_generic": "Platform notice",
        "status_to_send": "not sent yet",
        "status_send_failed": "sending failed, will be retried",
        "status_sent": "waiting for removal",
        "status_not_removed": "not removed yet",
        "status_removed": "removed",
        "status_withdrawn": "withdrawn",
        "withdraw_title": "Withdraw your case",
        "withdraw_intro": "Withdrawing deletes your hashes, your face template and your "
        "alerts for good. Platforms stop matching them within a second. Only the case "
        "number and the date of withdrawal are kept.",
        "withdraw": "Withdraw my case",
        "confirm_title": "Withdraw case {number}?",
        "confirm_intro": "This cannot be undone. To be protected again you would have to "
        "submit your files again, under a new case number.",
        "confirm": "Yes, withdraw and delete everything",
        "cancel": "No, keep my case",
        "withdrawn_title": "Your case is withdrawn",
        "withdrawn_intro": "Case {number} was withdrawn on {date}. Your hashes, face "
        "template and alerts are deleted.",
        "help_title": "Where to get help",
        "help_default": "You are not alone. Helplines and reporting services can support "
        "you and help you get content removed.",
        "error": "Something went wrong",
        "language": "Français",
    },
    "fr": {
        "title": "Votre dossier",
        "intro": "Saisissez votre numéro de dossier et votre code PIN pour savoir si des "
        "copies de vos images ont été trouvées, et pour retirer votre dossier.",
        "number": "Numéro de dossier",
        "number_help": "Il ressemble à RMP-XXXX-XXXX-XXXX.",
        "pin": "Code PIN",
        "pin_help": "Les 8 chiffres reçus avec votre numéro de dossier.",
        "show": "Voir mon dossier",
        "status_title": "Dossier {number}",
        "opened": "Ouvert le {date}.",
        "entries": "Empreintes de vos fichiers recherchées : {n}.",
        "face": "Votre gabarit de visage sert à rechercher des images modifiées de vous.",
        "no_alerts": "Aucune plateforme n'a trouvé de copie pour l'instant.",
        "alerts_title": "Alertes",
        "alerts_intro": "Une plateforme qui utilise Rempart a trouvé une copie "
        "correspondant à ce que vous avez déposé. Nous ne voyons ni ne gardons jamais le "
        "contenu lui-même.",
        "platform": "Plateforme",
        "when": "Quand",
        "how": "Correspondance",
        "kind_hash_match": "une copie de l'un de vos fichiers",
        "kind_face": "votre visage, dans une image intime ou générée",
        "notices_title": "Demandes de retrait",
        "notices_intro": "Les demandes de retrait faites aux plateformes pour vous. Chacune, "
        "une fois envoyée, est relancée régulièrement jusqu'au retrait du contenu.",
        "no_notices": "Aucune demande envoyée pour l'instant.",
        "notice_kind": "Demande",
        "sent": "Envoyée",
        "deadline": "Échéance",
        "notice_status": "État",
        "notice_takeitdown": "Demande TAKE IT DOWN Act (États-Unis)",
        "notice_dsa": "Notification DSA, article 16 (UE)",
        "notice_pharos": "Fiche de signalement Pharos",
        "notice_generic": "Notification à la plateforme",
        "status_to_send": "pas encore envoyée",
        "status_send_failed": "échec de l'envoi, nouvel essai prévu",
        "status_sent": "en attente de retrait",
        "status_not_removed": "pas encore retiré",
        "status_removed": "retiré",
        "status_withdrawn": "retirée",
        "withdraw_title": "Retirer votre dossier",
        "withdraw_intro": "Le retrait supprime définitivement vos empreintes, votre gabarit "
        "de visage et vos alertes. Les plateformes cessent de les rechercher en moins "
        "d'une seconde. Seuls le numéro du dossier et la date du retrait sont conservés.",
        "withdraw": "Retirer mon dossier",
        "confirm_title": "Retirer le dossier {number} ?",
        "confirm_intro": "C'est définitif. Pour être protégée à nouveau, il faudrait "
        "déposer vos fichiers de nouveau, sous un nouveau numéro.",
        "confirm": "Oui, retirer et tout supprimer",
        "cancel": "Non, garder mon dossier",
        "withdrawn_title": "Votre dossier est retiré",
        "withdrawn_intro": "Le dossier {number} a été retiré le {date}. Vos empreintes, "
        "votre gabarit de visage et vos alertes sont supprimés.",
        "help_title": "Où trouver de l'aide",
        "help_default": "Vous n'êtes pas seule. Des lignes d'écoute et des services de "
        "signalement peuvent vous soutenir et vous aider à faire retirer les contenus.",
        "error": "Une erreur est survenue",
        "language": "English",
    },
}

#: Messages for the errors the page can show, by code (anything else: a generic one).
ERRORS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "case_access_denied": "Unknown case number, or wrong PIN. Check both and try again.",
        "case_locked": "Too many wrong PINs: this case is locked for a while. Try again later.",
        "rate_limited": "Too many attempts from your connection. Wait a minute and try again.",
        "other": "The request could not be completed. Try again later.",
    },
    "fr": {
        "case_access_denied": "Numéro de dossier inconnu ou code PIN erroné. Vérifiez les "
        "deux et réessayez.",
        "case_locked": "Trop de codes PIN erronés : ce dossier est verrouillé pour un "
        "moment. Réessayez plus tard.",
        "rate_limited": "Trop de tentatives depuis votre connexion. Attendez une minute et "
        "réessayez.",
        "other": "La demande n'a pas pu aboutir. Réessayez plus tard.",
    },
}


def choose_lang(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` if it is ``en`` or ``fr``, else the first of those in Accept-Language,
    else English."""
    if query in LANGS:
        return query
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip().lower()[:2]
        if tag in LANGS:
            return tag
    return "en"


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("rempart.cases", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _help(lang: str) -> list[dict[str, Any]]:
    """The "where to get help" entries (``rempart.cases.help``), or none if they cannot be
    loaded -- then the error is logged, for the operator to fix the data file."""
    from rempart.cases.help import load_help

    try:
        return [e.to_dict() for e in load_help(lang)]
    except Exception:  # a broken help file must not hide the victim's case
        log.exception("the help entries (cases/data/help.toml) could not be loaded")
        return []


def render_case_page(lang: str, view: str = "form", **context: Any) -> str:
    """The case page in ``lang``: ``view`` is ``form``, ``status``, ``confirm`` or
    ``withdrawn``; ``context`` gives ``number``, ``pin``, ``status``, ``withdrawal``,
    ``error`` (a code) as the view needs."""
    texts = TEXTS[lang]
    error = context.pop("error", None)
    message = None
    if error:
        message = ERRORS[lang].get(error, ERRORS[lang]["other"])
    return (
        _env()
        .get_template("case.html")
        .render(
            lang=lang,
            other_lang="fr" if lang == "en" else "en",
            t=texts,
            view=view,
            error=message,
            help=_help(lang),
            **context,
        )
    )
