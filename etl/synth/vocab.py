"""Reference vocabularies of the synthetic sources: diseases, drugs, adverse events, alterations, centres.

Every code here is real and chosen so the warehouse can classify it:
- ICD-O-3 morphology/topography pairs are all classified by the IARC 2017 ICCC-3 table
  (behaviour 3; checked in tests/test_synth.py against `etl.transform.iccc3`), except the
  inflammatory myofibroblastic tumour 8825/1, classified through the warehouse's documented
  ICCC-3 extension (`etl.transform.iccc3.EXTENSIONS`).
- Drugs are INNs with their WHO ATC code (2024 structure: protein kinase inhibitors under
  L01E*, monoclonal antibodies under L01F*); drugs still in trials have no ATC code.
- Adverse events are MedDRA preferred terms with their 8-digit PT codes, as EDCs code them.
- Alterations use HGNC symbols (CD123 is the gene IL3RA), `::` for fusions and HGVS on a
  versioned RefSeq transcript.
Weights are relative frequencies, roughly following European paediatric series.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- drugs ---------------------------------------------------------------------------------

ATC: dict[str, str | None] = {
    "azacitidine": "L01BC07",
    "bevacizumab": "L01FG01",
    "blinatumomab": "L01FX07",
    "bortezomib": "L01XG01",
    "cabozantinib": "L01EX07",
    "clofarabine": "L01BB06",
    "crizotinib": "L01ED01",
    "cytarabine": "L01BC01",
    "dabrafenib": "L01EC02",
    "daratumumab": "L01FC01",
    "dasatinib": "L01EA02",
    "dinutuximab beta": "L01FX06",
    "everolimus": "L01EG02",
    "fludarabine": "L01BB05",
    "gemtuzumab ozogamicin": "L01FX02",
    "gilteritinib": "L01EX13",
    "imatinib": "L01EA01",
    "inotuzumab ozogamicin": "L01FB01",
    "ipilimumab": "L01FX04",
    "irinotecan": "L01CE02",
    "larotrectinib": "L01EX12",
    "lenvatinib": "L01EX08",
    "lorlatinib": "L01ED05",
    "midostaurin": "L01EX10",
    "mitotane": "L01XX23",
    "nelarabine": "L01BB07",
    "nivolumab": "L01FF01",
    "olaparib": "L01XK01",
    "pembrolizumab": "L01FF02",
    "ponatinib": "L01EA05",
    "regorafenib": "L01EX05",
    "revumenib": None,  # menin inhibitor, given in trials only
    "ruxolitinib": "L01EJ01",
    "selpercatinib": "L01EX22",
    "selumetinib": "L01EE04",
    "sorafenib": "L01EX02",
    "sunitinib": "L01EX01",
    "tagraxofusp": "L01XX67",
    "temozolomide": "L01AX03",
    "temsirolimus": "L01EG01",
    "topotecan": "L01CE01",
    "trametinib": "L01EE01",
    "venetoclax": "L01XX52",
    "vinorelbine": "L01CA04",
    "vismodegib": "L01XJ01",
}

# -- diseases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way a disease is coded and labelled."""

    morphology: str  # "9500/3"
    topography: str  # "C74.9"
    label_fr: str  # SACHA DX.LABEL as a French clinician writes it
    weight: float = 1.0


@dataclass(frozen=True)
class Disease:
    key: str
    group: str  # leukaemia / cns / neuroblastoma / solid
    variants: tuple[Variant, ...]
    age_years: tuple[float, float, float]  # low, mode, high at initial diagnosis
    sacha_weight: float = 0.0
    registry_weight: float = 0.0
    drugs: tuple[str, ...] = ()  # SACHA single agents for solid tumours
    size_cm: tuple[float, float] = (2.0, 8.0)  # registry tumour size range
    paired_organ: bool = False  # laterality is right/left rather than not applicable
    death_risk: float = 0.3  # of dying during the observed follow-up


def _v(morphology: str, topography: str, label: str, weight: float = 1.0) -> Variant:
    return Variant(morphology, topography, label, weight)


DISEASES: tuple[Disease, ...] = (
    # -- SACHA: relapsed / refractory paediatric cancers -----------------------------------
    Disease("neuroblastoma", "neuroblastoma", (
        _v("9500/3", "C74.9", "Neuroblastome surrénalien", 3),
        _v("9500/3", "C74.9", "Neuroblastome stade 4 (INRG M)", 2),
        _v("9500/3", "C48.0", "Neuroblastome rétropéritonéal", 1.5),
        _v("9500/3", "C38.2", "Neuroblastome thoracique", 0.5)),
        (0.2, 2.5, 7.0), sacha_weight=12, drugs=("crizotinib", "lorlatinib", "dinutuximab beta", "temozolomide"),
        death_risk=0.45),
    Disease("medulloblastoma", "cns", (
        _v("9470/3", "C71.6", "Médulloblastome", 3),
        _v("9470/3", "C71.6", "Médulloblastome SHH", 1),
        _v("9470/3", "C71.6", "Médulloblastome groupe 3", 1)),
        (2.0, 7.0, 16.0), sacha_weight=8, drugs=("vismodegib", "temozolomide", "bevacizumab"), death_risk=0.45),
    Disease("high_grade_glioma", "cns", (
        _v("9440/3", "C71.0", "Glioblastome", 2),
        _v("9401/3", "C71.7", "Astrocytome anaplasique du tronc", 1),
        _v("9380/3", "C71.7", "Gliome infiltrant du tronc cérébral (DIPG)", 3),
        _v("9440/3", "C71.0", "Gliome de haut grade hémisphérique", 2)),
        (3.0, 8.0, 18.0), sacha_weight=10,
        drugs=("everolimus", "larotrectinib", "nivolumab", "bevacizumab", "dabrafenib"), death_risk=0.7),
    Disease("ependymoma", "cns", (
        _v("9392/3", "C71.6", "Épendymome anaplasique de la fosse postérieure"),),
        (1.0, 5.0, 16.0), sacha_weight=2, drugs=("bevacizumab", "temozolomide"), death_risk=0.4),
    Disease("atrt", "cns", (
        _v("9508/3", "C71.6", "Tumeur tératoïde rhabdoïde atypique (ATRT)"),),
        (0.3, 1.5, 5.0), sacha_weight=1.5, drugs=("everolimus", "temozolomide"), death_risk=0.6),
    Disease("osteosarcoma", "solid", (
        _v("9180/3", "C40.2", "Ostéosarcome du fémur", 4),
        _v("9180/3", "C40.2", "Ostéosarcome ostéoblastique", 2),
        _v("9180/3", "C40.0", "Ostéosarcome de l'humérus", 1.5),
        _v("9180/3", "C41.4", "Ostéosarcome du bassin", 0.5)),
        (7.0, 14.0, 24.0), sacha_weight=9, drugs=("regorafenib", "cabozantinib", "lenvatinib", "sorafenib"),
        death_risk=0.5),
    Disease("ewing_sarcoma", "solid", (
        _v("9260/3", "C41.4", "Sarcome d'Ewing du bassin", 3),
        _v("9260/3", "C40.2", "Sarcome d'Ewing du fémur", 2),
        _v("9260/3", "C41.3", "Sarcome d'Ewing costal", 1.5)),
        (4.0, 13.0, 24.0), sacha_weight=7, drugs=("regorafenib", "cabozantinib", "olaparib"), death_risk=0.5),
    Disease("rhabdomyosarcoma", "solid", (
        _v("8910/3", "C49.0", "Rhabdomyosarcome embryonnaire tête et cou", 2),
        _v("8910/3", "C69.6", "Rhabdomyosarcome embryonnaire de l'orbite", 1),
        _v("8910/3", "C63.7", "Rhabdomyosarcome paratesticulaire", 1),
        _v("8920/3", "C49.2", "Rhabdomyosarcome alvéolaire du membre inférieur", 2),
        _v("8900/3", "C49.9", "Rhabdomyosarcome", 1)),
        (1.0, 5.0, 20.0), sacha_weight=7, drugs=("vinorelbine", "temsirolimus", "regorafenib"), death_risk=0.45),
    Disease("synovial_sarcoma", "solid", (
        _v("9040/3", "C49.2", "Synovialosarcome de la cuisse"),),
        (9.0, 15.0, 24.0), sacha_weight=1.5, drugs=("regorafenib", "cabozantinib"),
        death_risk=0.35),
    Disease("b_all", "leukaemia", (
        _v("9811/3", "C42.1", "LAL-B en rechute", 3),
        _v("9836/3", "C42.1", "Leucémie aiguë lymphoblastique B", 2)),
        (1.0, 4.0, 17.0), sacha_weight=10, death_risk=0.35),
    Disease("t_all", "leukaemia", (
        _v("9837/3", "C42.1", "LAL-T", 2),
        _v("9837/3", "C42.1", "Leucémie aiguë lymphoblastique T", 1)),
        (3.0, 9.0, 18.0), sacha_weight=3, death_risk=0.45),
    Disease("aml", "leukaemia", (
        _v("9861/3", "C42.1", "LAM en rechute", 2),
        _v("9861/3", "C42.1", "Leucémie aiguë myéloïde", 2)),
        (0.5, 8.0, 18.0), sacha_weight=5, death_risk=0.45),
    Disease("wilms", "solid", (
        _v("8960/3", "C64.9", "Néphroblastome", 2),
        _v("8960/3", "C64.9", "Tumeur de Wilms", 1)),
        (1.0, 3.5, 10.0), sacha_weight=3, drugs=("irinotecan", "topotecan", "vinorelbine"), death_risk=0.3,
        paired_organ=True),
    Disease("hepatoblastoma", "solid", (
        _v("8970/3", "C22.0", "Hépatoblastome"),),
        (0.3, 1.5, 5.0), sacha_weight=2, drugs=("irinotecan", "sorafenib"), death_risk=0.35),
    # -- very rare tumours (TREP; also rare carcinomas in SACHA) ---------------------------
    Disease("adrenocortical_carcinoma", "solid", (
        _v("8370/3", "C74.0", "Carcinome corticosurrénalien"),),
        (0.5, 3.0, 17.5), sacha_weight=1.2, registry_weight=6, drugs=("mitotane", "pembrolizumab"),
        size_cm=(3.0, 15.0), paired_organ=True, death_risk=0.35),
    Disease("nasopharyngeal_carcinoma", "solid", (
        _v("8070/3", "C11.9", "Carcinome du nasopharynx", 2),
        _v("8082/3", "C11.9", "Carcinome indifférencié du nasopharynx (UCNT)", 1)),
        (9.0, 14.0, 17.9), sacha_weight=1.0, registry_weight=12, drugs=("pembrolizumab", "nivolumab"),
        size_cm=(1.5, 6.0), death_risk=0.15),
    Disease("melanoma", "solid", (
        _v("8720/3", "C44.5", "Mélanome du tronc", 2),
        _v("8720/3", "C44.7", "Mélanome du membre inférieur", 1),
        _v("8720/3", "C44.6", "Mélanome du membre supérieur", 1)),
        (6.0, 14.0, 17.9), sacha_weight=1.0, registry_weight=16, drugs=("nivolumab", "ipilimumab", "dabrafenib"),
        size_cm=(0.3, 3.0), death_risk=0.12),
    Disease("thyroid_carcinoma", "solid", (
        _v("8260/3", "C73.9", "Carcinome papillaire de la thyroïde", 6),
        _v("8330/3", "C73.9", "Carcinome folliculaire de la thyroïde", 1),
        _v("8510/3", "C73.9", "Carcinome médullaire de la thyroïde", 1)),
        (8.0, 15.0, 17.9), sacha_weight=0.6, registry_weight=18, drugs=("larotrectinib", "selpercatinib"),
        size_cm=(0.5, 4.5), death_risk=0.02),
    Disease("pleuropulmonary_blastoma", "solid", (
        _v("8973/3", "C34.1", "Blastome pleuropulmonaire", 2),
        _v("8973/3", "C34.3", "Blastome pleuropulmonaire du lobe inférieur", 1)),
        (0.3, 2.0, 6.0), sacha_weight=0.5, registry_weight=4, drugs=("irinotecan", "vinorelbine"),
        size_cm=(4.0, 15.0), paired_organ=True, death_risk=0.3),
    Disease("pancreatoblastoma", "solid", (
        _v("8971/3", "C25.9", "Pancréatoblastome"),),
        (0.5, 3.0, 9.0), registry_weight=2, size_cm=(4.0, 12.0), death_risk=0.25),
    Disease("nut_carcinoma", "solid", (
        _v("8023/3", "C34.9", "Carcinome NUT pulmonaire", 1),
        _v("8023/3", "C76.0", "Carcinome NUT de la tête et du cou", 1)),
        (8.0, 14.0, 17.9), sacha_weight=0.4, registry_weight=1, drugs=("pembrolizumab",), size_cm=(3.0, 10.0),
        death_risk=0.8),
    Disease("gist", "solid", (
        _v("8936/3", "C16.9", "Tumeur stromale gastro-intestinale"),),
        (9.0, 14.0, 17.9), sacha_weight=0.3, registry_weight=3, drugs=("regorafenib", "sunitinib"),
        size_cm=(2.0, 10.0), death_risk=0.05),
    Disease("thymoma", "solid", (
        _v("8580/3", "C37.9", "Thymome malin"),),
        (9.0, 14.0, 17.9), registry_weight=2, size_cm=(4.0, 12.0), death_risk=0.1),
    Disease("colorectal_carcinoma", "solid", (
        _v("8140/3", "C18.7", "Adénocarcinome du sigmoïde"),),
        (11.0, 15.0, 17.9), sacha_weight=0.3, registry_weight=3, drugs=("pembrolizumab",), size_cm=(2.0, 8.0),
        death_risk=0.5),
    Disease("chordoma", "solid", (
        _v("9370/3", "C41.0", "Chordome de la base du crâne"),),
        (4.0, 12.0, 17.9), registry_weight=1.5, size_cm=(2.0, 6.0), death_risk=0.2),
    Disease("ovarian_sex_cord_tumour", "solid", (
        _v("8620/3", "C56.9", "Tumeur de la granulosa de l'ovaire", 1),
        _v("8631/3", "C56.9", "Tumeur de Sertoli-Leydig de l'ovaire", 1)),
        (1.0, 12.0, 17.9), registry_weight=2, size_cm=(5.0, 20.0), paired_organ=True, death_risk=0.05),
    Disease("salivary_gland_carcinoma", "solid", (
        _v("8430/3", "C07.9", "Carcinome mucoépidermoïde de la parotide"),),
        (8.0, 14.0, 17.9), registry_weight=3, size_cm=(1.0, 4.0), paired_organ=True, death_risk=0.03),
    Disease("dsrct", "solid", (
        _v("8806/3", "C48.2", "Tumeur desmoplastique à petites cellules rondes"),),
        (8.0, 14.0, 17.9), sacha_weight=0.3, registry_weight=1.5, drugs=("irinotecan", "temsirolimus"),
        size_cm=(5.0, 20.0), death_risk=0.7),
)
DISEASE = {d.key: d for d in DISEASES}
SACHA_DISEASES = tuple(d for d in DISEASES if d.sacha_weight > 0)
REGISTRY_DISEASES = tuple(d for d in DISEASES if d.registry_weight > 0)
# Very rare tumours a French SACHA patient living in Italy can also have in TREP.
CROSS_BORDER_DISEASES = tuple(d for d in REGISTRY_DISEASES if d.sacha_weight > 0)

# -- leukaemias of the ILTB board ----------------------------------------------------------


@dataclass(frozen=True)
class Leukaemia:
    key: str  # for B-ALL, T-ALL and AML also the DISEASE key of the SACHA disease
    label: str  # ILTB DIAG
    morphologies: tuple[tuple[str, float], ...]
    age_years: tuple[float, float, float]
    weight: float
    initial_share: float  # share submitted at initial diagnosis (high risk / refractory) not at relapse
    profile: tuple[tuple[str, float], ...]  # alteration keys with their prevalence
    death_risk: float


LEUKAEMIAS: tuple[Leukaemia, ...] = (
    Leukaemia("b_all", "B-ALL", (("9811/3", 3), ("9836/3", 2)), (0.2, 4.0, 17.9), 45, 0.25, (
        ("CD19", 0.85), ("CD22", 0.6), ("ETV6::RUNX1", 0.2), ("KMT2A::AFF1", 0.12), ("BCR::ABL1", 0.08),
        ("NRAS p.G12D", 0.12), ("KRAS p.G12D", 0.08), ("CDKN2A deletion", 0.25), ("IKZF1 deletion", 0.15),
        ("CRLF2 overexpression", 0.07), ("JAK2 p.R683G", 0.04)), 0.3),
    Leukaemia("t_all", "T-ALL", (("9837/3", 1),), (2.0, 9.0, 18.5), 15, 0.2, (
        ("CD38", 0.5), ("BCL2 overexpression", 0.35), ("NOTCH1 p.L1600P", 0.3), ("CDKN2A deletion", 0.5),
        ("NRAS p.G12D", 0.08)), 0.4),
    Leukaemia("aml", "AML", (("9861/3", 1),), (0.3, 9.0, 18.5), 25, 0.3, (
        ("CD33", 0.8), ("CD123", 0.5), ("FLT3-ITD", 0.15), ("FLT3 p.D835Y", 0.05), ("KMT2A::MLLT3", 0.15),
        ("NUP98::NSD1", 0.08), ("NRAS p.G12D", 0.15), ("KRAS p.G12D", 0.06), ("BCL2 overexpression", 0.3)), 0.45),
    Leukaemia("mpal", "MPAL", (("9806/3", 1),), (1.0, 8.0, 17.9), 5, 0.5, (
        ("BCR::ABL1", 0.6), ("CD19", 0.7), ("CD33", 0.6)), 0.45),
    Leukaemia("jmml", "JMML", (("9946/3", 1),), (0.2, 1.5, 5.0), 10, 0.7, (
        ("PTPN11 p.E76K", 0.35), ("NRAS p.G12D", 0.25), ("KRAS p.G12D", 0.15), ("CD33", 0.3)), 0.3),
)
LEUKAEMIA = {lk.key: lk for lk in LEUKAEMIAS}
ILTB_LABEL_VARIANTS = {"B-ALL": ("B-ALL", "BCP-ALL"), "T-ALL": ("T-ALL",), "AML": ("AML",), "MPAL": ("MPAL",),
                       "JMML": ("JMML",)}


@dataclass(frozen=True)
class AlterationSpec:
    alteration: str  # display form, the key of this table
    alteration_type: str  # SNV / indel / CNV / fusion / expression / surface_marker
    gene: str
    partner: str | None
    hgvs: str | None
    assays: tuple[str, ...]
    is_actionable: bool
    # What a board recommends for it: (recommendation type, agents, SACHA access route or None)
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()


ALTERATIONS: dict[str, AlterationSpec] = {a.alteration: a for a in (
    AlterationSpec("CD19", "surface_marker", "CD19", None, None, ("flow cytometry",), True,
                   (("STANDARD", ("blinatumomab",)), ("OFF_LABEL", ("blinatumomab",)))),
    AlterationSpec("CD22", "surface_marker", "CD22", None, None, ("flow cytometry",), True,
                   (("OFF_LABEL", ("inotuzumab ozogamicin",)),)),
    AlterationSpec("CD33", "surface_marker", "CD33", None, None, ("flow cytometry",), True,
                   (("OFF_LABEL", ("gemtuzumab ozogamicin",)),)),
    AlterationSpec("CD123", "surface_marker", "IL3RA", None, None, ("flow cytometry",), True,
                   (("TRIAL", ("tagraxofusp",)),)),
    AlterationSpec("CD38", "surface_marker", "CD38", None, None, ("flow cytometry",), True,
                   (("OFF_LABEL", ("daratumumab",)),)),
    AlterationSpec("ETV6::RUNX1", "fusion", "ETV6", "RUNX1", None, ("FISH", "RNA-seq"), False),
    AlterationSpec("KMT2A::AFF1", "fusion", "KMT2A", "AFF1", None, ("FISH", "RNA-seq"), True,
                   (("TRIAL", ("revumenib",)), ("OFF_LABEL", ("venetoclax", "azacitidine")))),
    AlterationSpec("KMT2A::MLLT3", "fusion", "KMT2A", "MLLT3", None, ("FISH", "RNA-seq"), True,
                   (("TRIAL", ("revumenib",)), ("OFF_LABEL", ("venetoclax", "azacitidine")))),
    AlterationSpec("NUP98::NSD1", "fusion", "NUP98", "NSD1", None, ("RNA-seq",), True,
                   (("TRIAL", ("revumenib",)),)),
    AlterationSpec("BCR::ABL1", "fusion", "BCR", "ABL1", None, ("FISH", "RNA-seq"), True,
                   (("OFF_LABEL", ("ponatinib",)), ("STANDARD", ("dasatinib",)))),
    AlterationSpec("NRAS p.G12D", "SNV", "NRAS", None, "NM_002524.5:c.35G>A", ("panel", "WES"), True,
                   (("TRIAL", ("trametinib",)), ("OFF_LABEL", ("trametinib",)))),
    AlterationSpec("KRAS p.G12D", "SNV", "KRAS", None, "NM_004985.5:c.35G>A", ("panel", "WES"), True,
                   (("TRIAL", ("trametinib",)),)),
    AlterationSpec("PTPN11 p.E76K", "SNV", "PTPN11", None, "NM_002834.5:c.226G>A", ("panel", "WES"), True,
                   (("TRIAL", ("trametinib",)),)),
    AlterationSpec("JAK2 p.R683G", "SNV", "JAK2", None, "NM_004972.4:c.2047A>G", ("panel", "WES"), True,
                   (("OFF_LABEL", ("ruxolitinib",)),)),
    AlterationSpec("NOTCH1 p.L1600P", "SNV", "NOTCH1", None, "NM_017617.5:c.4799T>C", ("panel", "WES"), False),
    AlterationSpec("FLT3-ITD", "indel", "FLT3", None, "NM_004119.3:c.1794_1814dup", ("panel",), True,
                   (("OFF_LABEL", ("gilteritinib",)), ("STANDARD", ("midostaurin",)))),
    AlterationSpec("FLT3 p.D835Y", "SNV", "FLT3", None, "NM_004119.3:c.2503G>T", ("panel", "WES"), True,
                   (("OFF_LABEL", ("gilteritinib",)),)),
    AlterationSpec("CDKN2A deletion", "CNV", "CDKN2A", None, None, ("panel", "WES"), False),
    AlterationSpec("IKZF1 deletion", "CNV", "IKZF1", None, None, ("panel", "WES"), False),
    AlterationSpec("CRLF2 overexpression", "expression", "CRLF2", None, None, ("RNA-seq",), True,
                   (("OFF_LABEL", ("ruxolitinib",)),)),
    AlterationSpec("BCL2 overexpression", "expression", "BCL2", None, None, ("RNA-seq",), True,
                   (("OFF_LABEL", ("venetoclax", "azacitidine")),)),
)}
# Salvage chemotherapy a board calls standard when nothing is actionable.
STANDARD_SALVAGE: tuple[tuple[str, ...], ...] = (("clofarabine", "cytarabine"), ("fludarabine", "cytarabine"),
                                                 ("nelarabine",), ("bortezomib",))

# -- adverse events (MedDRA PT, PT code) ----------------------------------------------------

AE_TERMS: tuple[tuple[str, str, float], ...] = (
    ("Febrile neutropenia", "10016288", 8),
    ("Neutrophil count decreased", "10029366", 6),
    ("Platelet count decreased", "10035528", 5),
    ("Anaemia", "10002034", 5),
    ("Lymphocyte count decreased", "10025256", 2),
    ("Nausea", "10028813", 5),
    ("Vomiting", "10047700", 4),
    ("Diarrhoea", "10012735", 4),
    ("Constipation", "10010774", 2),
    ("Abdominal pain", "10000081", 2),
    ("Stomatitis", "10042128", 2),
    ("Decreased appetite", "10061428", 2),
    ("Alanine aminotransferase increased", "10001551", 5),
    ("Aspartate aminotransferase increased", "10003481", 3),
    ("Blood bilirubin increased", "10005364", 2),
    ("Pyrexia", "10037660", 4),
    ("Fatigue", "10016256", 4),
    ("Headache", "10019211", 3),
    ("Hypertension", "10020772", 2),
    ("Hypokalaemia", "10021015", 2),
    ("Hyperglycaemia", "10020635", 1),
    ("Rash maculo-papular", "10037868", 2),
    ("Sepsis", "10040047", 1.5),
    ("Lung infection", "10061229", 1.5),
    ("Seizure", "10039906", 0.5),
    ("Peripheral sensory neuropathy", "10034620", 1),
)
# Class effects: adverse events a drug makes more likely.
AE_BY_DRUG: dict[str, tuple[tuple[str, str], ...]] = {
    "blinatumomab": (("Cytokine release syndrome", "10052015"), ("Neurotoxicity", "10029350")),
    "trametinib": (("Blood creatine phosphokinase increased", "10005470"), ("Paronychia", "10034016"),
                   ("Ejection fraction decreased", "10050528")),
    "selumetinib": (("Blood creatine phosphokinase increased", "10005470"), ("Paronychia", "10034016")),
    "nivolumab": (("Hypothyroidism", "10021114"), ("Colitis", "10009887"), ("Pneumonitis", "10035742")),
    "pembrolizumab": (("Hypothyroidism", "10021114"), ("Colitis", "10009887")),
    "ipilimumab": (("Colitis", "10009887"),),
    "crizotinib": (("Vision blurred", "10047513"), ("Alanine aminotransferase increased", "10001551")),
    "lorlatinib": (("Weight increased", "10047899"),),
    "venetoclax": (("Tumour lysis syndrome", "10045170"),),
    "everolimus": (("Hyperglycaemia", "10020635"), ("Stomatitis", "10042128")),
    "temsirolimus": (("Hyperglycaemia", "10020635"), ("Stomatitis", "10042128")),
    "regorafenib": (("Hypertension", "10020772"),),
    "cabozantinib": (("Hypertension", "10020772"), ("Diarrhoea", "10012735")),
    "dinutuximab beta": (("Cytokine release syndrome", "10052015"), ("Pyrexia", "10037660")),
}

# -- centres -------------------------------------------------------------------------------

SACHA_CENTRES: tuple[tuple[str, str], ...] = (
    ("FR01", "Institut Curie, Paris"), ("FR02", "Gustave Roussy, Villejuif"),
    ("FR03", "Centre Léon Bérard / IHOPe, Lyon"), ("FR04", "Hôpital Robert-Debré, Paris"),
    ("FR05", "Hôpital Armand-Trousseau, Paris"), ("FR06", "CHU de Lille"), ("FR07", "CHU de Marseille, La Timone"),
    ("FR08", "CHU de Toulouse"), ("FR09", "CHU de Bordeaux"), ("FR10", "CHU de Nantes"), ("FR11", "CHU de Rennes"),
    ("FR12", "CHU de Strasbourg"), ("FR13", "CHRU de Nancy"), ("FR14", "CHU de Montpellier"), ("FR15", "CHU de Nice"),
    ("FR16", "CHU Grenoble Alpes"), ("FR17", "CHU de Clermont-Ferrand"), ("FR18", "CHRU de Tours"),
    ("FR19", "CHU d'Angers"), ("FR20", "CHU de Rouen"), ("FR21", "CHU de Caen"), ("FR22", "CHU de Brest"),
    ("FR23", "CHU Dijon Bourgogne"), ("FR24", "CHU de Besançon"), ("FR25", "CHU de Reims"),
    ("FR26", "CHU Amiens-Picardie"), ("FR27", "CHU de Poitiers"), ("FR28", "CHU de Limoges"),
    ("FR29", "CHU de Saint-Étienne"), ("FR30", "CHU de La Réunion"), ("FR31", "CHU de Martinique"),
)
# Patients concentrate in the large Paris and Lyon centres: Zipf-like weights by rank.
SACHA_CENTRE_WEIGHTS: tuple[float, ...] = tuple(1.0 / (rank ** 0.9) for rank in range(1, len(SACHA_CENTRES) + 1))

ILTB_SITES: tuple[tuple[str, float], ...] = (
    ("DE01", 5), ("DE02", 3), ("DE03", 3), ("DE04", 2), ("DE05", 1.5), ("DE06", 1),
    ("FR01", 4), ("FR02", 2), ("FR03", 1.5), ("FR04", 1),
    ("IT01", 3), ("IT02", 2), ("IT03", 1.5), ("IT04", 1),
    ("NL01", 4), ("ES01", 2.5), ("ES02", 1.5), ("ES03", 1),
    ("GB01", 3), ("GB02", 2), ("GB03", 1.5), ("GB04", 1),
    ("SE01", 1.5), ("SE02", 1), ("PL01", 2), ("PL02", 1), ("PL03", 1),
    ("BE01", 1.5), ("AT01", 1.5), ("CZ01", 1), ("DK01", 1), ("CH01", 1), ("PT01", 1),
)
ILTB_FRENCH_SITES: tuple[str, ...] = ("FR01", "FR02", "FR03", "FR04")

REGISTRY_CENTRES: tuple[tuple[str, float], ...] = (
    ("IT-MI01", 8), ("IT-GE01", 4), ("IT-RM01", 4), ("IT-TO01", 3.5), ("IT-PD01", 3.5), ("IT-BO01", 2.5),
    ("IT-FI01", 2), ("IT-NA01", 2), ("IT-RM02", 2), ("IT-MI02", 1.5), ("IT-PA01", 1.5), ("IT-BA01", 1.5),
    ("IT-CA01", 1), ("IT-CT01", 1), ("IT-PI01", 1), ("IT-MB01", 1), ("IT-AN01", 0.8), ("IT-TS01", 0.8),
)

# Countries of residence of SACHA patients other than France (cross-border care).
SACHA_FOREIGN_RESIDENCE: tuple[tuple[str, float], ...] = (("BE", 2), ("LU", 1), ("MC", 1), ("CH", 1), ("MA", 1),
                                                          ("DZ", 1), ("TN", 0.5), ("LB", 0.5))

# -- free text -------------------------------------------------------------------------------

REGISTRY_NOTES: tuple[str, ...] = (
    "Diagnosi confermata da revisione istologica centralizzata.",
    "Paziente seguito anche presso altro centro, verrà rivalutato.",
    "Biopsia eseguita in altra sede, revisione già effettuata.",
    "Terapia chirurgica completa, nessuna terapia adiuvante.",
    "Caso discusso al tumor board nazionale; sarà ricontattato.",
    "Familiarità positiva: è stata proposta consulenza genetica.",
    "Follow-up presso il centro di residenza (città di origine).",
    "Dati aggiornati dopo visita di controllo; così da protocollo.",
    "Può essere incluso nello studio europeo EXPeRT.",
)
REGISTRY_LOST_NOTE = "Perdita al follow-up dopo trasferimento all'estero."
ILTB_REASONS_NOT_FOLLOWED: tuple[str, ...] = (
    "No trial slot available",
    "Drug not available in country",
    "Clinical deterioration",
    "Family declined",
    "Proceeded directly to HSCT",
    "Physician preference",
    "Reimbursement refused",
)
# The physician's reason at each 3-monthly ILTB follow-up, by trial enrolment status, with weights.
ILTB_TRIAL_REASONS: dict[str, tuple[tuple[str, float], ...]] = {
    "enrolled": (("target_matched_trial", 0.6), ("board_advised_trial", 0.3), ("no_standard_option", 0.1)),
    "not_enrolled": (("no_trial_available", 0.3), ("not_eligible", 0.2), ("in_remission", 0.15),
                     ("poor_general_condition", 0.1), ("family_declined", 0.1), ("physician_choice", 0.1),
                     ("trial_centre_too_far", 0.05)),
}
ILTB_END_REASONS: dict[str, tuple[str, ...]] = {
    "completed": ("Completed", "Completed as planned", "Proceeded to HSCT", "Bridged to CAR-T"),
    "progression": ("Progressive disease", "Progression", "Refractory disease"),
    "toxicity": ("Toxicity", "Unacceptable toxicity"),
    "death": ("Death",),
    "other": ("Physician decision", "Patient/parent decision"),
}
SACHA_AUDIT_REASONS: tuple[str, ...] = (
    "Erreur de saisie",
    "Correction après vérification du dossier source",
    "Donnée manquante complétée",
    "Correction demandée par le moniteur",
    "Mise à jour après compte rendu d'anatomopathologie",
)

# -- esmart: a multi-arm trial of molecularly matched targeted therapy ------------------------

ATC.update({
    "ribociclib": "L01EF02",
    "ceralasertib": None,  # ATR inhibitor, given in trials only
    "samotolisib": None,  # PI3K/mTOR inhibitor, given in trials only
})

# Alterations that open an ESMART arm (plus a few passengers the profile reports too).
ESMART_ALTERATIONS: dict[str, AlterationSpec] = {a.alteration: a for a in (
    AlterationSpec("CDK4 amplification", "CNV", "CDK4", None, None, ("panel", "WES"), True),
    AlterationSpec("CCND2 amplification", "CNV", "CCND2", None, None, ("panel", "WES"), True),
    AlterationSpec("CDKN2A deletion", "CNV", "CDKN2A", None, None, ("panel", "WES"), True),
    AlterationSpec("PIK3CA p.H1047R", "SNV", "PIK3CA", None, "NM_006218.4:c.3140A>G", ("panel", "WES"), True),
    AlterationSpec("PTEN deletion", "CNV", "PTEN", None, None, ("panel", "WES"), True),
    AlterationSpec("BRAF p.V600E", "SNV", "BRAF", None, "NM_004333.6:c.1799T>A", ("panel", "WES"), True),
    AlterationSpec("KIAA1549::BRAF", "fusion", "KIAA1549", "BRAF", None, ("RNA-seq",), True),
    AlterationSpec("NF1 p.R1362*", "SNV", "NF1", None, "NM_000267.3:c.4084C>T", ("panel", "WES"), True),
    AlterationSpec("KRAS p.G12D", "SNV", "KRAS", None, "NM_004985.5:c.35G>A", ("panel", "WES"), True),
    AlterationSpec("BRCA2 p.S1982fs", "indel", "BRCA2", None, "NM_000059.4:c.5946del", ("panel", "WES"), True),
    AlterationSpec("ATM deletion", "CNV", "ATM", None, None, ("panel", "WES"), True),
    AlterationSpec("ATRX deletion", "CNV", "ATRX", None, None, ("panel", "WES"), True),
    AlterationSpec("MYCN amplification", "CNV", "MYCN", None, None, ("panel", "WES"), False),
    AlterationSpec("TP53 p.R248Q", "SNV", "TP53", None, "NM_000546.6:c.743G>A", ("panel", "WES"), False),
)}


@dataclass(frozen=True)
class EsmartArm:
    code: str  # SDTM ARMCD
    name: str  # SDTM ARM
    drugs: tuple[str, ...]
    alterations: tuple[str, ...]  # ESMART_ALTERATIONS keys that make a patient eligible for the arm


ESMART_ARMS: tuple[EsmartArm, ...] = (
    EsmartArm("A", "Ribociclib + topotecan + temozolomide", ("ribociclib", "topotecan", "temozolomide"),
              ("CDK4 amplification", "CCND2 amplification", "CDKN2A deletion")),
    EsmartArm("B", "Ribociclib + everolimus", ("ribociclib", "everolimus"),
              ("PIK3CA p.H1047R", "PTEN deletion", "CDKN2A deletion")),
    EsmartArm("C", "Olaparib + irinotecan", ("olaparib", "irinotecan"), ("BRCA2 p.S1982fs", "ATM deletion")),
    EsmartArm("D", "Trametinib", ("trametinib",), ("BRAF p.V600E", "KIAA1549::BRAF", "NF1 p.R1362*", "KRAS p.G12D")),
    EsmartArm("E", "Olaparib + ceralasertib", ("olaparib", "ceralasertib"), ("ATRX deletion", "ATM deletion")),
    EsmartArm("F", "Samotolisib", ("samotolisib",), ("PIK3CA p.H1047R", "PTEN deletion")),
)
ESMART_ACTIONABLE: tuple[tuple[str, float], ...] = (
    ("CDKN2A deletion", 4), ("CDK4 amplification", 2), ("CCND2 amplification", 1), ("PIK3CA p.H1047R", 2),
    ("PTEN deletion", 1.5), ("BRAF p.V600E", 1.5), ("KIAA1549::BRAF", 1.5), ("NF1 p.R1362*", 2),
    ("KRAS p.G12D", 1), ("BRCA2 p.S1982fs", 1), ("ATM deletion", 1.5), ("ATRX deletion", 2),
)
# (DISEASE key, DXTERM as the English CRF writes it, weight); morphology and site from DISEASE.
ESMART_DISEASES: tuple[tuple[str, str, float], ...] = (
    ("neuroblastoma", "Neuroblastoma", 8), ("high_grade_glioma", "High-grade glioma", 7),
    ("medulloblastoma", "Medulloblastoma", 4), ("rhabdomyosarcoma", "Rhabdomyosarcoma", 4),
    ("osteosarcoma", "Osteosarcoma", 4), ("ewing_sarcoma", "Ewing sarcoma", 3),
    ("ependymoma", "Ependymoma", 1.5), ("atrt", "Atypical teratoid rhabdoid tumour", 1),
    ("hepatoblastoma", "Hepatoblastoma", 0.5),
)
# SITEID, ISO 3166 alpha-2 country, weight. SDTM writes COUNTRY as alpha-3.
ESMART_SITES: tuple[tuple[str, str, float], ...] = (
    ("0101", "FR", 9), ("0102", "FR", 3), ("0103", "FR", 2), ("0201", "GB", 3), ("0202", "GB", 1.5),
    ("0301", "NL", 3), ("0401", "ES", 2), ("0402", "ES", 1), ("0501", "IT", 2), ("0502", "IT", 1.5),
    ("0601", "DK", 1), ("0701", "CH", 1),
)
ISO3: dict[str, str] = {"FR": "FRA", "GB": "GBR", "NL": "NLD", "ES": "ESP", "IT": "ITA", "DK": "DNK", "CH": "CHE",
                        "BE": "BEL", "DE": "DEU"}
AE_BY_DRUG.update({
    "ribociclib": (("Neutrophil count decreased", "10029366"), ("Electrocardiogram QT prolonged", "10014387")),
    "olaparib": (("Anaemia", "10002034"), ("Nausea", "10028813")),
    "ceralasertib": (("Anaemia", "10002034"), ("Platelet count decreased", "10035528")),
    "samotolisib": (("Hyperglycaemia", "10020635"), ("Diarrhoea", "10012735")),
    "topotecan": (("Febrile neutropenia", "10016288"),),
    "irinotecan": (("Diarrhoea", "10012735"),),
})

# -- crizotinib_imt: crizotinib in ALK/ROS1-rearranged inflammatory myofibroblastic tumour ----

# IMT is 8825/1 (borderline) in ICD-O-3; the rare malignant forms (epithelioid inflammatory
# myofibroblastic sarcoma) are coded 8825/3. Sites: lung, abdomen/mesentery, bladder, head and neck.
IMT_VARIANTS: tuple[Variant, ...] = (
    _v("8825/1", "C34.1", "Inflammatory myofibroblastic tumour of the lung", 4),
    _v("8825/1", "C34.3", "IMT, lower lobe of the lung", 1.5),
    _v("8825/1", "C48.1", "Inflammatory myofibroblastic tumour of the mesentery", 3),
    _v("8825/1", "C49.4", "Abdominal inflammatory myofibroblastic tumour", 2),
    _v("8825/1", "C67.9", "IMT of the bladder", 1.5),
    _v("8825/1", "C49.0", "Inflammatory myofibroblastic tumour, head and neck", 1),
    _v("8825/3", "C48.1", "Epithelioid inflammatory myofibroblastic sarcoma", 1),
    _v("8825/3", "C49.4", "Inflammatory myofibroblastic sarcoma of the abdomen", 0.5),
)
# (5' gene, 3' gene, weight); RANBP2::ALK is the fusion of the epithelioid sarcoma.
IMT_FUSIONS: tuple[tuple[str, str, float], ...] = (
    ("TPM3", "ALK", 4), ("TPM4", "ALK", 3), ("CLTC", "ALK", 2), ("RANBP2", "ALK", 1), ("EML4", "ALK", 1),
    ("TFG", "ROS1", 1), ("YWHAE", "ROS1", 0.5),
)
# Site code, ISO 3166 alpha-2 country, weight.
CRIZOTINIB_SITES: tuple[tuple[str, str, float], ...] = (
    ("FR-01", "FR", 3), ("FR-02", "FR", 2), ("IT-01", "IT", 3), ("IT-02", "IT", 1.5), ("DE-01", "DE", 2),
    ("GB-01", "GB", 2), ("NL-01", "NL", 1.5), ("ES-01", "ES", 1), ("BE-01", "BE", 1),
)
