//! The case workers' JSON API: handlers, request and response types, and the OpenAPI document
//! generated from them (so the document and the behaviour cannot drift apart).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ponte_proto::{v1, vocab};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::problem::{ApiError, JsonBody, Problem};
use super::ApiState;
use crate::client::ClientError;
use crate::consent::{parse_iso_day, today};
use crate::intake::{IntakeError, IntakeIdentity, NewIntake};
use crate::node::NodeError;
use crate::search::{self, Query as SearchQuery};
use crate::store::LocalRelationship;
use crate::view::{ConsentView, RelationshipView};

/// Media type of the FHIR R4 answer.
pub const FHIR_JSON: &str = "application/fhir+json";

// ------------------------------------------------------------------------------------------
// Who is calling

/// The authenticated caller: the integrated system, and the operator it acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub system: String,
    pub operator: String,
    pub role: v1::OperatorRole,
}

/// The operator headers every `/api/v1` call except the vocabulary carries.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct OperatorHeaders {
    /// Pseudonymous id of the operator at the calling system (`[A-Za-z0-9._-]`, 1–64
    /// characters, case-sensitive, recorded exactly as sent); it reaches the coordinator's audit
    /// log. Never a name or a codice fiscale: an id containing something shaped like a codice
    /// fiscale or an STP/ENI code is refused (400, field `X-Ponte-Operator`).
    #[serde(rename = "X-Ponte-Operator")]
    #[param(example = "op-4711")]
    operator: String,
    /// The operator's role: `assistente_sociale`, `operatore_pua`, `membro_uvm`,
    /// `operatore_cot`, `mmg` or `referente_privacy`; one the system is registered for.
    #[serde(rename = "X-Ponte-Role")]
    #[param(example = "operatore_pua")]
    role: String,
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", format!("the {name} header is not plain ASCII text")).field(name)),
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        // Credentials first: a caller without them learns nothing else about the request.
        let system = match header_str(&parts.headers, "authorization")? {
            Some(auth) => {
                let token = auth
                    .strip_prefix("Bearer ")
                    .or_else(|| auth.strip_prefix("bearer "))
                    .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "the Authorization header must be `Bearer <credential>`"))?;
                state.credentials.by_token(token.trim()).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "the credential is not registered on this node (or was removed): ask the node's administrator for one (`ponte-node credentials add`)",
                    )
                })?
            }
            None => match parts.extensions.get::<ponte_net::PeerInfo>().and_then(|p| p.leaf()) {
                Some(der) => state.credentials.by_cert(der).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "the client certificate is valid but not registered for any system on this node (`ponte-node credentials add SYSTEM --cert FILE`)",
                    )
                })?,
                None => {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing_credentials",
                        "send the system's credential as `Authorization: Bearer <credential>`, or connect with its registered client certificate",
                    ));
                }
            },
        };
        let operator = header_str(&parts.headers, "x-ponte-operator")?.filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "missing_header", "send the operator's pseudonymous id in the X-Ponte-Operator header").field("X-Ponte-Operator")
        })?;
        vocab::check_operator_id(operator)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", format!("X-Ponte-Operator: {e}")).field("X-Ponte-Operator"))?;
        let role_name = header_str(&parts.headers, "x-ponte-role")?.filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "missing_header", "send the operator's role in the X-Ponte-Role header (e.g. operatore_pua)").field("X-Ponte-Role")
        })?;
        let role = vocab::OperatorRoleName::parse(role_name)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_header", format!("X-Ponte-Role: {e}")).field("X-Ponte-Role"))?;
        if !system.allows_role(&vocab::OperatorRoleName::name(role)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "role_not_allowed",
                format!("system {:?} is not registered for the role {role_name:?}; it may act for: {}", system.id, system.roles.join(", ")),
            )
            .field("X-Ponte-Role"));
        }
        // As given: the audit names the operator exactly as the calling system does.
        Ok(Caller { system: system.id.clone(), operator: operator.to_string(), role })
    }
}

// ------------------------------------------------------------------------------------------
// Vocabulary

/// A code and its Italian label.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Term {
    pub code: String,
    pub label: String,
}

/// A service category, with its sensitivity tier (`t1`, `t2`, `t3`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceTerm {
    pub code: String,
    pub label: String,
    pub tier: String,
}

/// The closed vocabularies, with Italian labels.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Vocabulary {
    pub purposes: Vec<Term>,
    pub roles: Vec<Term>,
    pub services: Vec<ServiceTerm>,
    pub entity_types: Vec<Term>,
    pub consent_givers: Vec<Term>,
    pub break_glass_reasons: Vec<Term>,
    pub statuses: Vec<Term>,
}

fn terms<T: Copy>(all: &[T], name: fn(T) -> String, label: fn(T) -> &'static str) -> Vec<Term> {
    all.iter().map(|v| Term { code: name(*v), label: label(*v).to_string() }).collect()
}

/// The vocabularies the other calls take, with Italian labels. Needs no credentials.
#[utoipa::path(get, path = "/api/v1/vocabulary", tag = "vocabulary",
    responses((status = 200, description = "The vocabularies", body = Vocabulary)))]
pub async fn vocabulary() -> Json<Vocabulary> {
    use crate::labels;
    Json(Vocabulary {
        purposes: terms(vocab::PurposeName::ALL, vocab::PurposeName::name, labels::purpose),
        roles: terms(vocab::OperatorRoleName::ALL, vocab::OperatorRoleName::name, labels::role),
        services: vocab::ServiceCategoryName::ALL
            .iter()
            .map(|c| ServiceTerm {
                code: vocab::ServiceCategoryName::name(*c),
                label: labels::service(*c).to_string(),
                tier: format!("t{}", vocab::default_tier(*c) as i32),
            })
            .collect(),
        entity_types: terms(vocab::EntityType::ALL, vocab::EntityType::name, labels::entity_type),
        consent_givers: terms(vocab::ConsentGiverName::ALL, vocab::ConsentGiverName::name, labels::consent_giver),
        break_glass_reasons: terms(vocab::BreakGlassReasonName::ALL, vocab::BreakGlassReasonName::name, labels::break_glass),
        statuses: terms(vocab::StatusName::ALL, vocab::StatusName::name, labels::status),
    })
}

// ------------------------------------------------------------------------------------------
// Session

/// Who the node takes the caller to be.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    /// The registered system the credential or certificate belongs to.
    pub system_id: String,
    /// The operator's pseudonymous id, as it will reach the audit.
    pub operator: String,
    pub role: String,
    /// Every role the system may act for.
    pub allowed_roles: Vec<String>,
    /// This node's id.
    pub node_id: String,
}

/// Checks the credentials and operator headers without doing anything (a login check).
#[utoipa::path(get, path = "/api/v1/session", tag = "vocabulary",
    params(OperatorHeaders),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 200, description = "The credentials and headers are accepted", body = Session),
        (status = 400, description = "An operator header is missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role not allowed for this system", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn session(State(state): State<Arc<ApiState>>, caller: Caller) -> Json<Session> {
    let allowed_roles = state.credentials.systems.iter().find(|s| s.id == caller.system).map(|s| s.roles.clone()).unwrap_or_default();
    Json(Session {
        system_id: caller.system,
        operator: caller.operator,
        role: vocab::OperatorRoleName::name(caller.role),
        allowed_roles,
        node_id: state.shared.node.config.node_id.clone(),
    })
}

// ------------------------------------------------------------------------------------------
// Finding a person

/// Search by codice fiscale, or by surname + given name + birth date.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// A codice fiscale (omocodes find their base code and back). Alone, or leave it out.
    #[param(example = "RSSMRA50B41E506U")]
    pub codice_fiscale: Option<String>,
    /// Surname (any spelling: particles, case, accents).
    #[param(example = "Rossi")]
    pub surname: Option<String>,
    /// Given name (first, or all).
    #[param(example = "Maria")]
    pub given_name: Option<String>,
    /// Birth date `YYYY-MM-DD`; day and month swapped are found too.
    #[param(example = "1950-02-01")]
    pub birth_date: Option<String>,
    /// Days of tolerance on the birth date (0–366, default 0).
    #[param(example = 0)]
    pub tolerance_days: Option<u32>,
}

/// One of this node's own relationships with the person.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnRelationship {
    pub relationship_id: String,
    pub unit: String,
    pub service: String,
    pub service_label: String,
    pub status: String,
    pub status_label: String,
    /// `YYYY-MM`.
    pub since: String,
    pub case_manager: bool,
    /// Obscured at the person's request: nobody else sees it.
    pub obscured: bool,
    /// Published to the federation (false: never-encode, kept here only).
    pub published: bool,
}

/// A person found among this node's records (the node's normalised values).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Person {
    pub record_id: String,
    /// Normalised, particles joined: `DEGIORGI`.
    pub surname: String,
    /// Normalised, space-separated: `MARIA GRAZIA`.
    pub given_names: String,
    /// `M` or `F`.
    pub sex: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// Belfiore or `Z` code of the birthplace.
    pub birthplace: Option<String>,
    pub codice_fiscale: Option<String>,
    /// `exact` (every part equal after normalisation) or `close`.
    #[schema(example = "exact")]
    pub r#match: String,
    /// 0–1.
    pub score: f64,
    pub relationships: Vec<OwnRelationship>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Persons {
    pub persons: Vec<Person>,
}

fn own_relationship(r: &LocalRelationship) -> OwnRelationship {
    let category = v1::ServiceCategory::try_from(r.category).unwrap_or_default();
    let status = v1::RelationshipStatus::try_from(r.status).unwrap_or_default();
    OwnRelationship {
        relationship_id: r.relationship_id.clone(),
        unit: r.unit.clone(),
        service: vocab::ServiceCategoryName::from_wire(r.category).map(vocab::ServiceCategoryName::name).unwrap_or_default(),
        service_label: crate::labels::service(category).to_string(),
        status: vocab::StatusName::from_wire(r.status).map(vocab::StatusName::name).unwrap_or_default(),
        status_label: crate::labels::status(status).to_string(),
        since: format!("{}-{:02}", r.since_month / 100, r.since_month % 100),
        case_manager: r.case_manager,
        obscured: r.obscured,
        published: r.publishable(),
    }
}

fn bad_query(field: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{field}: {reason}")).field(field)
}

fn search_query(p: &SearchParams) -> Result<SearchQuery, ApiError> {
    let demographic = [&p.surname, &p.given_name, &p.birth_date];
    let q = match (&p.codice_fiscale, demographic.iter().any(|f| f.is_some())) {
        (Some(_), true) => return Err(bad_query("codice_fiscale", "search either by codice_fiscale or by surname + given_name + birth_date, not both")),
        (Some(cf), false) => SearchQuery::CodiceFiscale(cf.clone()),
        (None, _) => {
            let need = |v: &Option<String>, f: &str| v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| bad_query(f, "missing: give codice_fiscale, or surname, given_name and birth_date"));
            let surname = need(&p.surname, "surname")?;
            let given_name = need(&p.given_name, "given_name")?;
            let day = parse_iso_day(&need(&p.birth_date, "birth_date")?).map_err(|e| bad_query("birth_date", e))?;
            let birth_date = crate::normalise::BirthDate { year: (day / 10_000) as u16, month: (day / 100 % 100) as u8, day: (day % 100) as u8 };
            SearchQuery::Demographic { surname, given_name, birth_date, tolerance_days: p.tolerance_days.unwrap_or(0) }
        }
    };
    q.check().map_err(|e| bad_query(e.field, e.reason))?;
    Ok(q)
}

/// Finds a person among this node's own records, best match first.
#[utoipa::path(get, path = "/api/v1/persons", tag = "persons",
    params(SearchParams, OperatorHeaders),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 200, description = "Matching persons, best first (at most api.max_results)", body = Persons),
        (status = 400, description = "Missing or contradictory search terms", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role not allowed for this system", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn find_persons(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Persons>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", format!("the query string is not valid: {}", e.body_text())))?;
    let q = search_query(&params)?;
    let by = if matches!(q, SearchQuery::CodiceFiscale(_)) { "codice_fiscale" } else { "demographic" };
    metrics::counter!("ponte_node_searches_total", "by" => by).increment(1);
    let node = &state.shared.node;
    let records: Vec<crate::store::LocalRecord> = node.store.records().collect::<anyhow::Result<_>>().map_err(ApiError::internal)?;
    let hits = search::search(&q, records.iter().map(|r| (r.record_id.as_str(), &r.identity)), state.max_results);
    let mut persons = Vec::with_capacity(hits.len());
    for h in hits {
        let Some(r) = records.iter().find(|r| r.record_id == h.record_id) else { continue };
        let id = &r.identity;
        persons.push(Person {
            record_id: r.record_id.clone(),
            surname: id.surname_tokens.join(" "),
            given_names: id.given_names.join(" "),
            sex: id.sex.map(|s| format!("{s:?}")),
            birth_date: id.birth_date.map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
            birthplace: id.birthplace.clone(),
            codice_fiscale: id.codice_fiscale.clone(),
            r#match: if h.exact { "exact" } else { "close" }.into(),
            score: (h.score * 1000.0).round() / 1000.0,
            relationships: node.store.relationships_of(&r.record_id).map_err(ApiError::internal)?.iter().map(own_relationship).collect(),
        });
    }
    tracing::info!(system = %caller.system, role = ?caller.role, by, found = persons.len(), "search");
    Ok(Json(Persons { persons }))
}

// ------------------------------------------------------------------------------------------
// Who else

/// A who-else question about one of this node's records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"purpose": "continuita_assistenziale"}))]
pub struct WhoElseRequest {
    /// `continuita_assistenziale`, `convocazione_uvm`, `dimissione_protetta`,
    /// `richiesta_interessato` or `emergenza` (break-glass).
    pub purpose: String,
    /// Anchor on this relationship of the record (default: its first active or pending one).
    #[serde(default)]
    pub relationship_id: Option<String>,
    /// Required with purpose `emergenza`, refused otherwise: `pericolo_di_vita` or
    /// `incapacita_di_consentire`.
    #[serde(default)]
    pub break_glass: Option<String>,
}

/// Who else takes care of the person: what the federation's policy lets this operator see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WhoElseAnswer {
    pub record_id: String,
    /// The anchor relationship the question was asked from.
    pub relationship_id: String,
    /// The coordinator's audit receipt `SEQUENCE:HASH` for this question.
    pub receipt: String,
    /// A constant notice, the same in every answer.
    pub notice: String,
    pub relationships: Vec<RelationshipView>,
}

enum Wants {
    Json,
    Fhir,
}

/// Content negotiation: FHIR when `application/fhir+json` is preferred to plain JSON.
fn negotiate(headers: &HeaderMap) -> Result<Wants, ApiError> {
    let Some(accept) = header_str(headers, "accept")? else { return Ok(Wants::Json) };
    if accept.is_empty() {
        return Ok(Wants::Json);
    }
    let mut best: Option<(f32, usize, Wants)> = None;
    for (i, part) in accept.split(',').enumerate() {
        let mut it = part.split(';');
        let mime = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let w = match mime.as_str() {
            FHIR_JSON => Wants::Fhir,
            "application/json" | "application/*" | "*/*" => Wants::Json,
            _ => continue,
        };
        // Higher q wins; for equal q, the more specific FHIR type, then the first listed.
        let specific = matches!(w, Wants::Fhir);
        let rank = (q, if specific { 0 } else { 1 + i });
        if q > 0.0 && best.as_ref().is_none_or(|(bq, bi, _)| rank.0 > *bq || (rank.0 == *bq && rank.1 < *bi)) {
            best = Some((rank.0, rank.1, w));
        }
    }
    best.map(|(_, _, w)| w).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", format!("this answer is available as application/json or {FHIR_JSON}; the Accept header asked for {accept:?}")).field("Accept")
    })
}

/// The problem answer for an error from the coordinator.
fn coordinator_error(e: &ClientError) -> ApiError {
    match e {
        ClientError::Refused { message, .. } | ClientError::Invalid { message } => {
            ApiError::new(StatusCode::FORBIDDEN, "refused", format!("the federation's policy refused the question: {message}"))
        }
        ClientError::NotPublished { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "not_published",
            "the coordinator does not know this record's relationship yet: it is still being published; ask again in a few seconds",
        ),
        ClientError::RateLimited { retry_after, .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "coordinator_unavailable", format!("the coordinator could not answer: {e}")).retry_after(*retry_after)
        }
        ClientError::Local(_) => ApiError::internal(e),
        ClientError::Config { .. } | ClientError::Unreachable { .. } | ClientError::Unavailable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "coordinator_unavailable", format!("the coordinator could not answer: {e}"))
        }
    }
}

/// The problem answer for a local operation that could not be done.
fn node_error(e: NodeError) -> ApiError {
    match e {
        NodeError::NeverEncoded { .. } | NodeError::NothingPublished { .. } => ApiError::new(StatusCode::CONFLICT, "not_published", e.to_string()),
        NodeError::NoRelationship { .. } | NodeError::UnknownRelationship { .. } => ApiError::not_found(e.to_string()).field("relationship_id"),
        NodeError::NoRecord { .. } | NodeError::NoConsent { .. } => ApiError::not_found(e.to_string()),
        NodeError::InvalidConsent(reason) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", reason),
        NodeError::Store(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// Asks the coordinator who else takes care of the person of a local record.
///
/// The answer is what the federation's policy lets this operator see for this purpose. A
/// relationship whose match is only possible carries band `possible` ("possibile
/// corrispondenza — da verificare"). With `Accept: application/fhir+json` the answer is a FHIR R4
/// Bundle of EpisodeOfCare. If the record's relationship is still queued for publishing, the
/// node publishes it first.
#[utoipa::path(post, path = "/api/v1/persons/{record_id}/who-else", tag = "who-else",
    params(("record_id" = String, Path, description = "The local record id", example = "P1"), OperatorHeaders),
    request_body(content = WhoElseRequest, content_type = "application/json"),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 200, description = "The answer (JSON, or FHIR R4 Bundle with Accept: application/fhir+json)",
            content((WhoElseAnswer = "application/json"), (serde_json::Value = "application/fhir+json"))),
        (status = 400, description = "Malformed body or headers", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role not allowed, or refused by the policy", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record or relationship here", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "Accept names nothing available", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing of this record is published", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled or took too long to arrive", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown purpose or break-glass reason", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Coordinator unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn who_else(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(record_id): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<WhoElseRequest>,
) -> Result<Response, ApiError> {
    let wants = negotiate(&headers)?;
    let purpose = vocab::PurposeName::parse(&req.purpose).map_err(|e| ApiError::invalid("purpose", e))?;
    let break_glass = match (purpose, req.break_glass.as_deref()) {
        (v1::Purpose::Emergenza, Some(r)) => Some(vocab::BreakGlassReasonName::parse(r).map_err(|e| ApiError::invalid("break_glass", e))?),
        (v1::Purpose::Emergenza, None) => {
            return Err(ApiError::invalid("break_glass", "purpose emergenza is break-glass: give the reason, pericolo_di_vita or incapacita_di_consentire"));
        }
        (_, Some(_)) => return Err(ApiError::invalid("break_glass", "only for purpose emergenza: leave it out")),
        (_, None) => None,
    };
    let shared = &state.shared;
    let node = &shared.node;
    if node.store.get_record(&record_id).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found(format!("no record {record_id:?} on this node (find it with GET /api/v1/persons)")));
    }
    let anchor = node.anchor_for(&record_id, req.relationship_id.as_deref()).map_err(node_error)?;
    if node.store.is_queued(&anchor.relationship_id).map_err(ApiError::internal)? {
        // A run the coordinator slowed down leaves the anchor queued: the question below then
        // gets not_published, which says to ask again shortly.
        shared.publish_now().await.map_err(|e| match e {
            ClientError::Local(_) => ApiError::internal(&e),
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "coordinator_unavailable", format!("the record's relationship could not be published first: {e}")),
        })?;
    }
    let purpose_name = vocab::PurposeName::name(purpose);
    let started = Instant::now();
    let mut client = shared.client().await.map_err(|e| coordinator_error(&e))?;
    let result = crate::client::who_else(node, &mut client, &anchor, purpose, caller.role, &caller.operator, break_glass).await;
    metrics::histogram!("ponte_node_question_seconds").record(started.elapsed().as_secs_f64());
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            metrics::counter!("ponte_node_questions_total", "purpose" => purpose_name.clone(), "outcome" => "refused").increment(1);
            shared.after_error(&e).await;
            tracing::info!(system = %caller.system, role = ?caller.role, purpose = %purpose_name, error = e.kind(), "who-else not answered");
            return Err(coordinator_error(&e));
        }
    };
    metrics::counter!("ponte_node_questions_total", "purpose" => purpose_name.clone(), "outcome" => "answered").increment(1);
    for r in &answer.relationships {
        let band = vocab::MatchBandName::from_wire(r.band).map(vocab::MatchBandName::name).unwrap_or_default();
        metrics::counter!("ponte_node_relationships_shown_total", "band" => band).increment(1);
    }
    tracing::info!(system = %caller.system, role = ?caller.role, purpose = %purpose_name, shown = answer.relationships.len(), "who-else answered");
    let receipt = answer.receipt.as_ref().map(|r| format!("{}:{}", r.sequence, r.entry_hash)).unwrap_or_default();
    match wants {
        Wants::Json => Ok(Json(WhoElseAnswer {
            record_id,
            relationship_id: anchor.relationship_id,
            receipt,
            notice: answer.notice.clone(),
            relationships: answer.relationships.iter().map(RelationshipView::from).collect(),
        })
        .into_response()),
        Wants::Fhir => {
            let bundle = super::fhir_answer(&state, &answer);
            let mut r = Json(bundle).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/fhir+json; fhirVersion=4.0"));
            Ok(r)
        }
    }
}

// ------------------------------------------------------------------------------------------
// Intakes

/// A new intake (*segnalata*): a new person with their identity, or a person already here by
/// `record_id` (then no identity fields).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"surname": "Rossi", "given_names": "Maria", "sex": "F", "birth_date": "1950-02-01", "birthplace": "E506", "service": "segretariato_sociale"}))]
pub struct IntakeRequest {
    /// Your own id for the person; generated (`segn-…`) when left out. If it names a person
    /// already on this node, leave the identity fields out.
    #[serde(default)]
    pub record_id: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    #[serde(default)]
    pub given_names: Option<String>,
    /// `M` or `F`.
    #[serde(default)]
    pub sex: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub birth_date: Option<String>,
    /// Comune name or Belfiore / `Z` code.
    #[serde(default)]
    pub birthplace: Option<String>,
    #[serde(default)]
    pub codice_fiscale: Option<String>,
    /// The service the person is referred to (a service category, e.g. `segretariato_sociale`).
    pub service: String,
    /// The receiving unit (default: the node's `import.default_unit`).
    #[serde(default)]
    pub unit: Option<String>,
}

/// The intake registered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntakeCreated {
    pub record_id: String,
    pub relationship_id: String,
    /// Always `segnalata`.
    pub status: String,
    /// `YYYY-MM`.
    pub since: String,
    /// A new person record was created (false: added to an existing one).
    pub new_record: bool,
    /// Queued for publishing: other entities can find it within seconds.
    pub queued: bool,
}

/// Registers a new intake (*presa in carico segnalata*), so that a first-contact PUA can ask who
/// else follows the person at once.
#[utoipa::path(post, path = "/api/v1/intakes", tag = "intakes",
    params(OperatorHeaders),
    request_body(content = IntakeRequest, content_type = "application/json"),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 201, description = "Registered and queued for publishing", body = IntakeCreated),
        (status = 400, description = "Malformed body or headers", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role not allowed for this system", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled or took too long to arrive", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong (the problem's `field` says which)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_intake(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    JsonBody(req): JsonBody<IntakeRequest>,
) -> Result<(StatusCode, Json<IntakeCreated>), ApiError> {
    let category = vocab::ServiceCategoryName::parse(&req.service).map_err(|e| ApiError::invalid("service", e))?;
    let given = [&req.surname, &req.given_names, &req.sex, &req.birth_date, &req.birthplace, &req.codice_fiscale];
    let identity = given.iter().any(|f| f.is_some()).then(|| IntakeIdentity {
        surname: req.surname.clone().unwrap_or_default(),
        given_names: req.given_names.clone().unwrap_or_default(),
        sex: req.sex.clone().unwrap_or_default(),
        birth_date: req.birth_date.clone().unwrap_or_default(),
        birthplace: req.birthplace.clone().unwrap_or_default(),
        codice_fiscale: req.codice_fiscale.clone().unwrap_or_default(),
    });
    let intake = NewIntake { record_id: req.record_id.clone(), identity, category, unit: req.unit.clone() };
    let done = state.shared.node.register_intake(&intake).map_err(|e| match e {
        IntakeError::Invalid { field, reason } => ApiError::invalid(field, reason),
        IntakeError::Store(e) => ApiError::internal(e),
    })?;
    metrics::counter!("ponte_node_intakes_total").increment(1);
    state.shared.changed();
    tracing::info!(system = %caller.system, role = ?caller.role, new_record = done.new_record, "intake registered");
    Ok((
        StatusCode::CREATED,
        Json(IntakeCreated {
            record_id: done.record_id,
            relationship_id: done.relationship_id,
            status: "segnalata".into(),
            since: format!("{}-{:02}", done.since_month / 100, done.since_month % 100),
            new_record: done.new_record,
            queued: true,
        }),
    ))
}

// ------------------------------------------------------------------------------------------
// Consent and obscuring

/// A consent the person gives here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"categories": ["salute_mentale"], "recipients": ["asl", "comune"], "purposes": ["continuita_assistenziale"], "valid_until": "2027-10-31", "given_by": "interessato"}))]
pub struct ConsentRequest {
    /// Service categories that may be disclosed (e.g. `serd`, `salute_mentale`).
    pub categories: Vec<String>,
    /// Kinds of entity that may receive them: `asl`, `comune`, `ats`, `provider`.
    pub recipients: Vec<String>,
    /// Purposes for which.
    pub purposes: Vec<String>,
    /// First valid day `YYYY-MM-DD` (default today, UTC).
    #[serde(default)]
    pub valid_from: Option<String>,
    /// Last valid day `YYYY-MM-DD`, inclusive.
    pub valid_until: String,
    /// `interessato`, `rappresentante_legale` or `genitore`.
    pub given_by: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consents {
    pub consents: Vec<ConsentView>,
}

fn record_must_exist(state: &ApiState, record_id: &str) -> Result<(), ApiError> {
    match state.shared.node.store.get_record(record_id).map_err(ApiError::internal)? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("no record {record_id:?} on this node (find it with GET /api/v1/persons)"))),
    }
}

/// The consents recorded here for a person.
#[utoipa::path(get, path = "/api/v1/persons/{record_id}/consents", tag = "consents",
    params(("record_id" = String, Path, description = "The local record id", example = "P1"), OperatorHeaders),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 200, description = "Oldest first", body = Consents),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record here", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_consents(State(state): State<Arc<ApiState>>, _caller: Caller, Path(record_id): Path<String>) -> Result<Json<Consents>, ApiError> {
    record_must_exist(&state, &record_id)?;
    let today = today();
    let consents = state.shared.node.store.consents_of(&record_id).map_err(ApiError::internal)?;
    Ok(Json(Consents { consents: consents.iter().map(|c| ConsentView::new(c, today)).collect() }))
}

/// Records a consent the person gives here; the coordinator applies it wherever they are followed.
#[utoipa::path(post, path = "/api/v1/persons/{record_id}/consents", tag = "consents",
    params(("record_id" = String, Path, description = "The local record id", example = "P1"), OperatorHeaders),
    request_body(content = ConsentRequest, content_type = "application/json"),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 201, description = "Recorded and queued for the coordinator", body = ConsentView),
        (status = 400, description = "Malformed body or headers", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record here", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing of this record is published", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled or took too long to arrive", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn give_consent(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(record_id): Path<String>,
    JsonBody(req): JsonBody<ConsentRequest>,
) -> Result<(StatusCode, Json<ConsentView>), ApiError> {
    record_must_exist(&state, &record_id)?;
    let mut scope = crate::consent::scope_from_names(
        &req.categories,
        &req.recipients,
        &req.purposes,
        req.valid_from.as_deref(),
        &req.valid_until,
        &req.given_by,
    )
    .map_err(|(field, e)| ApiError::invalid(field, e))?;
    scope.check().map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", e))?;
    let node = &state.shared.node;
    if node.published_relationship(&record_id).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_published",
            format!("record {record_id:?} has no published relationship: the coordinator could not apply a consent to this person"),
        ));
    }
    let c = node.give_consent(&record_id, scope).map_err(node_error)?;
    metrics::counter!("ponte_node_consents_total", "action" => "given").increment(1);
    state.shared.changed();
    tracing::info!(system = %caller.system, role = ?caller.role, "consent recorded");
    Ok((StatusCode::CREATED, Json(ConsentView::new(&c, today()))))
}

/// Revokes a consent: effective on the coordinator's next answer once delivered (within seconds).
#[utoipa::path(post, path = "/api/v1/consents/{consent_id}/revoke", tag = "consents",
    params(("consent_id" = String, Path, description = "The consent id"), OperatorHeaders),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = ConsentView),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent here", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_consent(State(state): State<Arc<ApiState>>, caller: Caller, Path(consent_id): Path<String>) -> Result<Json<ConsentView>, ApiError> {
    let node = &state.shared.node;
    if node.store.get_consent(&consent_id).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found(format!("no consent {consent_id:?} on this node")));
    }
    let c = node.revoke_consent(&consent_id).map_err(node_error)?;
    metrics::counter!("ponte_node_consents_total", "action" => "revoked").increment(1);
    state.shared.changed();
    tracing::info!(system = %caller.system, role = ?caller.role, "consent revoked");
    Ok(Json(ConsentView::new(&c, today())))
}

/// Obscuring (*oscuramento*) of one of this node's relationships, at the person's request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"obscured": true}))]
pub struct ObscureRequest {
    /// true: nobody else sees the relationship; false: ends the obscuring.
    pub obscured: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObscureDone {
    pub relationship_id: String,
    pub obscured: bool,
    /// Queued for the coordinator (false for a never-encode relationship, which is not published).
    pub queued: bool,
}

/// Obscures one of this node's relationships, or ends the obscuring.
#[utoipa::path(put, path = "/api/v1/relationships/{relationship_id}/obscured", tag = "consents",
    params(("relationship_id" = String, Path, description = "The relationship id", example = "R1"), OperatorHeaders),
    request_body(content = ObscureRequest, content_type = "application/json"),
    security(("bearer" = []), ("clientCertificate" = [])),
    responses(
        (status = 200, description = "Done, and queued for the coordinator", body = ObscureDone),
        (status = 400, description = "Malformed body or headers", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such relationship here", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled or took too long to arrive", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_obscured(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(relationship_id): Path<String>,
    JsonBody(req): JsonBody<ObscureRequest>,
) -> Result<Json<ObscureDone>, ApiError> {
    let node = &state.shared.node;
    if node.store.get_relationship(&relationship_id).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found(format!("no relationship {relationship_id:?} on this node")));
    }
    let queued = node.set_obscured(&relationship_id, req.obscured).map_err(node_error)?;
    state.shared.changed();
    tracing::info!(system = %caller.system, role = ?caller.role, obscured = req.obscured, "obscuring changed");
    Ok(Json(ObscureDone { relationship_id, obscured: req.obscured, queued }))
}

// ------------------------------------------------------------------------------------------
// The document

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A per-system credential from `ponte-node credentials add SYSTEM --roles …` (only its SHA-256 is stored)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "clientCertificate",
            SecurityScheme::MutualTls {
                description: Some("A client certificate chaining to the node's api.client_ca and registered with `ponte-node credentials add SYSTEM --cert FILE`".into()),
                extensions: None,
            },
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ponte node API",
        description = "The case workers' API of a Ponte node: find a person among the entity's own records, ask who else takes care of them (JSON or FHIR R4), register an intake, record consent and obscuring. Every call but the vocabulary needs a system credential (Bearer) or a registered client certificate, and the operator's pseudonymous id and role in X-Ponte-Operator and X-Ponte-Role; errors are application/problem+json.",
        license(name = "EUPL-1.2"),
    ),
    paths(vocabulary, session, find_persons, who_else, create_intake, list_consents, give_consent, revoke_consent, set_obscured),
    modifiers(&Security),
    tags(
        (name = "vocabulary", description = "Codes and Italian labels"),
        (name = "persons", description = "The entity's own records"),
        (name = "who-else", description = "Who else takes care of the person"),
        (name = "intakes", description = "New intakes (segnalata)"),
        (name = "consents", description = "Consent and obscuring"),
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Wants, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        negotiate(&h)
    }

    #[test]
    fn content_negotiation_picks_fhir_only_when_preferred() {
        assert!(matches!(negotiate(&HeaderMap::new()), Ok(Wants::Json)));
        assert!(matches!(accept("application/json"), Ok(Wants::Json)));
        assert!(matches!(accept("*/*"), Ok(Wants::Json)));
        assert!(matches!(accept("application/fhir+json"), Ok(Wants::Fhir)));
        assert!(matches!(accept("application/json, application/fhir+json"), Ok(Wants::Fhir)));
        assert!(matches!(accept("application/fhir+json;q=0.5, application/json"), Ok(Wants::Json)));
        assert!(matches!(accept("application/fhir+json; fhirVersion=4.0"), Ok(Wants::Fhir)));
        let e = accept("text/html").err().unwrap();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        assert!(accept("application/fhir+json;q=0").is_err());
    }

    #[test]
    fn the_document_names_every_route_and_both_security_schemes() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for p in ["/api/v1/vocabulary", "/api/v1/session", "/api/v1/persons", "/api/v1/persons/{record_id}/who-else", "/api/v1/intakes", "/api/v1/persons/{record_id}/consents", "/api/v1/consents/{consent_id}/revoke", "/api/v1/relationships/{relationship_id}/obscured"] {
            assert!(doc["paths"][p].is_object(), "{p} missing");
        }
        assert_eq!(doc["components"]["securitySchemes"]["clientCertificate"]["type"], "mutualTLS");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
}
