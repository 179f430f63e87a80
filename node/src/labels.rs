//! Italian labels of the closed vocabularies, for the case workers' page and API. The codes stay
//! the wire names (`cure_domiciliari`); these are what a person reads.

use ponte_proto::v1;

pub fn service(c: v1::ServiceCategory) -> &'static str {
    use v1::ServiceCategory as S;
    match c {
        S::Unspecified => "",
        S::SegretariatoSociale => "Segretariato sociale",
        S::ServizioSocialeProfessionale => "Servizio sociale professionale",
        S::AssistenzaDomiciliareSociale => "Assistenza domiciliare sociale (SAD)",
        S::ContributoEconomico => "Contributo economico",
        S::AssegnoDiInclusione => "Assegno di inclusione",
        S::ProntoInterventoSociale => "Pronto intervento sociale",
        S::ResidenzaFittizia => "Residenza fittizia",
        S::CureDomiciliari => "Cure domiciliari integrate",
        S::CurePalliative => "Cure palliative",
        S::ResidenzialeRsa => "Residenzialità (RSA)",
        S::CentroDiurno => "Centro diurno",
        S::ServiziDisabilita => "Servizi per la disabilità",
        S::DimissioniProtette => "Dimissioni protette",
        S::Serd => "SerD (dipendenze)",
        S::SaluteMentale => "Salute mentale",
        S::Npia => "Neuropsichiatria infantile (NPIA)",
        S::Consultorio => "Consultorio",
        S::Ivg => "Interruzione volontaria di gravidanza",
        S::Hiv => "HIV",
        S::ViolenzaDiGenere => "Violenza di genere",
        S::TutelaMinori => "Tutela minori",
    }
}

pub fn category_group(g: v1::CategoryGroup) -> &'static str {
    use v1::CategoryGroup as G;
    match g {
        G::Unspecified => "Servizio",
        G::InterventoSociale => "Intervento sociale",
        G::SostegnoEconomico => "Sostegno economico",
        G::AssistenzaDomiciliare => "Assistenza domiciliare",
        G::AssistenzaResidenziale => "Assistenza residenziale",
        G::AssistenzaSemiresidenziale => "Assistenza semiresidenziale",
        G::SostegnoDisabilita => "Sostegno alla disabilità",
        G::ContinuitaOspedaleTerritorio => "Continuità ospedale-territorio",
        G::ServizioSpecialistico => "Servizio specialistico",
        #[allow(unreachable_patterns)]
        _ => "Servizio",
    }
}

pub fn status(s: v1::RelationshipStatus) -> &'static str {
    use v1::RelationshipStatus as S;
    match s {
        S::Unspecified => "",
        S::Segnalata => "Segnalata",
        S::InValutazione => "In valutazione",
        S::Attiva => "Attiva",
        S::Sospesa => "Sospesa",
        S::Conclusa => "Conclusa",
    }
}

pub fn purpose(p: v1::Purpose) -> &'static str {
    use v1::Purpose as P;
    match p {
        P::Unspecified => "",
        P::ContinuitaAssistenziale => "Continuità assistenziale",
        P::ConvocazioneUvm => "Convocazione UVM",
        P::DimissioneProtetta => "Dimissione protetta",
        P::RichiestaInteressato => "Richiesta dell'interessato",
        P::Emergenza => "Emergenza (accesso straordinario)",
    }
}

pub fn role(r: v1::OperatorRole) -> &'static str {
    use v1::OperatorRole as R;
    match r {
        R::Unspecified => "",
        R::AssistenteSociale => "Assistente sociale",
        R::OperatorePua => "Operatore PUA",
        R::MembroUvm => "Membro UVM",
        R::OperatoreCot => "Operatore COT",
        R::Mmg => "Medico di medicina generale",
        R::ReferentePrivacy => "Referente privacy",
    }
}

pub fn entity_type(e: v1::EntityType) -> &'static str {
    use v1::EntityType as E;
    match e {
        E::Unspecified => "",
        E::Asl => "ASL",
        E::Comune => "Comune",
        E::Ats => "Ambito territoriale sociale",
        E::Provider => "Ente erogatore",
    }
}

pub fn contact(c: v1::ContactRole) -> &'static str {
    use v1::ContactRole as C;
    match c {
        C::Unspecified => "",
        C::SportelloPua => "Sportello PUA",
        C::SegreteriaUnita => "Segreteria dell'unità",
        C::CaseManagerUnita => "Case manager dell'unità",
    }
}

pub fn consent_giver(g: v1::ConsentGiver) -> &'static str {
    use v1::ConsentGiver as G;
    match g {
        G::Unspecified => "",
        G::Interessato => "L'interessato",
        G::RappresentanteLegale => "Rappresentante legale (tutore, amministratore di sostegno)",
        G::Genitore => "Genitore (minore)",
    }
}

pub fn break_glass(b: v1::BreakGlassReason) -> &'static str {
    use v1::BreakGlassReason as B;
    match b {
        B::Unspecified => "",
        B::PericoloDiVita => "Pericolo di vita",
        B::IncapacitaDiConsentire => "Incapacità di consentire",
    }
}

/// `certain` → `certa`, `probable` → `probabile`, `possible` → the warning a case worker must see.
pub fn band(b: v1::MatchBand) -> &'static str {
    match b {
        v1::MatchBand::Certain => "certa",
        v1::MatchBand::Probable => "probabile",
        _ => "possibile corrispondenza — da verificare",
    }
}
