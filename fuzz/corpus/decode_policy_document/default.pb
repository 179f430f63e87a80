
�D# Ponte disclosure policy — the default shipped with the coordinator (DOMAIN.md §7).
#
# This file is also the reference for privacy officers: every key is listed and explained.
#
# How it works
# - The coordinator checks a policy before it goes live (`ponte-coordinator policy check FILE`,
#   or the Governance service's ReloadPolicy). Errors make the file unusable and say where
#   (line:column) and how to fix them; warnings flag settings that weaken a protection.
# - Every loaded version is audited, and its `version` appears in every audit entry.
# - Every section and key is optional except `version`: a key left out takes the value shown
#   here. Two exceptions, where the section is the complete list when present:
#   [purposes] (a role not listed may not ask at all) and [tiers] (only the categories listed
#   are changed).
# - Unknown keys are errors. Names are the lower-case official names used on the wire
#   (`cure_domiciliari`, `in_valutazione`, `asl`, ...), spelled exactly.
# - What no policy can change: obscuring is always honoured; a tier can only be made stricter;
#   break-glass never discloses a consent-required tier without consent; relationships closed
#   longer than the retention period are never shown, even before they are removed.
# - At most 256 KiB.

# Required. 1 to 64 characters among letters, digits, '.', '_' and '-'. Give every change a new
# version: the audit log names the version each answer was given under.
version = "default-2026.1"

# Optional free text for the officers (at most 4096 bytes). Not used by any rule.
description = "Default Ponte policy: DOMAIN.md §7 as shipped"

# ---------------------------------------------------------------------------------------------
# Which purposes each operator role may ask for (GDPR 5(1)(b); DPCM 12/1/2017 art. 21;
# L. 234/2021 c.163; D.Lgs. 29/2024 artt. 27-28). Everything else is refused.
#
# Keys: operator roles — assistente_sociale, operatore_pua, membro_uvm, operatore_cot, mmg,
#       referente_privacy.
# Values: lists of purposes — continuita_assistenziale, convocazione_uvm, dimissione_protetta,
#       richiesta_interessato.
# `emergenza` does not belong here: break-glass is governed by [break_glass] below.
# When this section is present it is the complete list: a role not listed may not ask.
[purposes]
assistente_sociale = ["continuita_assistenziale", "convocazione_uvm", "dimissione_protetta"]
mmg = ["continuita_assistenziale", "convocazione_uvm", "dimissione_protetta"]
operatore_pua = ["continuita_assistenziale", "convocazione_uvm"]
membro_uvm = ["continuita_assistenziale", "convocazione_uvm"]
operatore_cot = ["dimissione_protetta", "continuita_assistenziale"]
referente_privacy = ["richiesta_interessato"]

# ---------------------------------------------------------------------------------------------
# Need-to-know (GDPR 5(1)(c)): a node may only ask about a person it has in care. The question
# is anchored on one of the node's own published relationships, whose status must be listed here.
[anchor]
# Statuses: segnalata, in_valutazione, attiva, sospesa, conclusa.
# Adding sospesa or conclusa gives a warning: DOMAIN.md §7 asks for an active or pending
# relationship. An empty list refuses every question (warning).
statuses = ["segnalata", "in_valutazione", "attiva"]

# ---------------------------------------------------------------------------------------------
# The sector of each requesting entity type, which decides what it sees ([disclosure] below).
# Keys: asl, comune, ats, provider. Values: "social" or "health".
[sectors]
asl = "health"
comune = "social"
ats = "social"
provider = "social"

# ---------------------------------------------------------------------------------------------
# Sensitivity tiers (DOMAIN.md §3). Every service category has a default tier:
#   t1: segretariato_sociale, servizio_sociale_professionale, assistenza_domiciliare_sociale,
#       contributo_economico, assegno_di_inclusione, pronto_intervento_sociale,
#       residenza_fittizia
#   t2: cure_domiciliari, cure_palliative, residenziale_rsa, centro_diurno, servizi_disabilita,
#       dimissioni_protette
#   t3: serd, salute_mentale, npia, consultorio, ivg, hiv, violenza_di_genere, tutela_minori
# This section may make a category's tier stricter, e.g.  centro_diurno = "t3"
# Making a tier less strict than its default is an error. A node may also declare a stricter
# tier for one relationship; the strictest of the three applies.
[tiers]

# ---------------------------------------------------------------------------------------------
# What each requesting sector sees of a relationship (GDPR 5(1)(c), 25).
# Keys: t1, t2, t3 (the default for every category of that tier), and optionally a service
#       category name to override its tier's default for that sector, e.g.  centro_diurno = "full"
# Values:
#   "full"        — category, responsible unit, status, since month, case manager, plan, contact;
#   "generalised" — only the category's group (e.g. assistenza_domiciliare for both SAD and
#                   cure domiciliari; every t3 category is servizio_specialistico): no category,
#                   no unit, no plan type; status, since month, case manager and contact shown;
#   "nothing"     — not shown, and nothing in the answer says so.
# A consent-required tier ([consent]) is shown only with consent, whatever is set here.
# Social requesters seeing a t2 or t3 category "full" gives a warning (DOMAIN.md §7: social
# requesters get generalised health categories).
[disclosure.social]
t1 = "full"
t2 = "generalised"
t3 = "generalised"

[disclosure.health]
t1 = "full"
t2 = "full"
t3 = "full"

# ---------------------------------------------------------------------------------------------
# The person's explicit consent (GDPR 7, 9(2)(a)), recorded at the node where it was given.
[consent]
# Tiers that are existence-hidden unless a consent covers them. A consent covers a relationship
# when its scope names the relationship's category, the requester's entity type (asl, comune,
# ats, provider) and the question's purpose, and today is within its validity.
# Leaving out "t3" gives a warning: T3 services would be disclosed without consent.
required_for = ["t3"]
# Categories a consent given by a parent (given_by genitore) does not unlock: a minor's own
# access to the consultorio (L. 405/1975) and to IVG (L. 194/1978). Leaving either out gives a
# warning.
parent_cannot_unlock = ["consultorio", "ivg"]

# ---------------------------------------------------------------------------------------------
# Obscuring (oscuramento) at the person's request (DM 7/9/2023 art. 9; DPCM 178/2015 art. 8 c.2):
# an obscured relationship is shown to nobody, and no answer lets anyone infer it was hidden.
[obscuring]
# Always true: false is an error (obscuring cannot be turned off).
honour = true

# ---------------------------------------------------------------------------------------------
# Break-glass for vital interest (GDPR 9(2)(c)): questions with purpose `emergenza`.
# A break-glass question needs a reason (pericolo_di_vita or incapacita_di_consentire) and still
# needs the anchor. Consent-required tiers stay hidden without consent: not configurable.
[break_glass]
# Off unless enabled. When false, every `emergenza` question is refused.
enabled = false
# Operator roles that may ask with purpose `emergenza` when enabled.
roles = ["operatore_cot", "mmg"]
# Privacy-officer certificate ids ([a-z0-9-], at most 32) notified of every break-glass
# question. Enabled with an empty list gives a warning.
notify = ["dpo-federazione"]

# ---------------------------------------------------------------------------------------------
# Match bands (GDPR 22, 5(1)(d)): certain and probable matches are always shown.
[bands]
# Whether "possible" matches are shown, flagged "to be verified" (true), or not at all (false).
show_possible = true

# ---------------------------------------------------------------------------------------------
# Contact points are role-based (GDPR 5(1)(c)).
[contact]
# When false, a relationship whose contact is the unit's case manager (case_manager_unita) is
# shown with the unit's office (segreteria_unita) as contact.
case_manager_direct = false

# ---------------------------------------------------------------------------------------------
# Retention (GDPR 5(1)(e), 17; 5(2), 30).
[retention]
# A closed (conclusa) relationship is removed this many months after its closure month (the
# since_month of a closed relationship), and never shown from then on. 1 to 600; more than 120
# gives a warning.
closed_months = 12
# Seconds between the coordinator's retention sweeps. 10 to 86400.
sweep_interval_secs = 3600
# Months the audit log is kept. 1 to 1200; less than 24 gives a warning.
audit_months = 24
