"""HELO judgement: real office host names are never "random-looking", generated ones mostly are.

The real names are a table written by hand, none of them in the model's training list; the
random ones come from seeded generators of the kinds spambots send.  bench/helo_names.py
prints the rates this file asserts floors for.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest

from smtptop import helo
from smtptop.helo import helo_anomalies, random_looking

CLIENT = "192.168.0.108"

# Host names as offices, homes and vendors write them, by kind.
REAL = {
    "the brief's": """
        pc-bernd.studio.lan pc-frank pc-horst ws-schmidt.corp.lan nb-kbrandt.corp.lan
        wxpanna.studio.lan INTERN-PC RECEPTION-PC ACCOUNTS-PC PROJECTS-PC DESKTOP-7F3K2QH
    """,
    "German": """
        PC-MUELLER pc-schneider nb-fischer ws-weber.corp.lan PC-MEYER wagner-pc BECKER-NB
        schulz-laptop hoffmann-ws PC-KOCH nb-richter.firma.local KLEIN-PC pc-schroeder
        NB-NEUMANN ws-schwarz zimmermann-pc.buero.local braun-nb KRUEGER-PC pc-hofmann
        hartmann-ws PC-SCHMITT werner-nb krause-pc lehmann-nb PC-SCHULZE maier-ws pc-koehler
        herrmann-pc nb-koenig PC-JUERGEN pc-gisela ws-ursula nb-dieter pc-wolfgang pc-sabine
        GABI-PC BUCHHALTUNG-PC EMPFANG-PC pc-empfang2 VERTRIEB01 pc-lager WERKSTATT-PC
        sekretariat2.kanzlei.local PRAXIS-EMPFANG pc-labor2 KONSTRUKTION-01 cad-ws03
        pc-schwarzkopf nb-thomas-h PC-STEFFI pc-pfannenstiel nb-dreher ws-eichhorn
        pc-kirchhoff PC-WIESNER nb-steinbrecher pc-grossmann PC-BAUMGARTNER ws-rothenberger
        pc-ostermann EMPFANG-RECHTS BUCHHALTUNG-3 Kasse2 ANMELDUNG-1 Behandlung3
        BEHANDLUNGSZIMMER1 WARTEZIMMER-TV ZAHNARZT-PC rezeption-ost KONFERENZRAUM
        mweber-pc tkoch.corp.lan hkoenig-nb
    """,
    "English": """
        john-pc SARAH-LAPTOP pc-michael mike-laptop JENNIFER-PC dave-desktop LAPTOP-EMILY
        ws-thompson nb-johnson williams-pc BROWN-PC jsmith-laptop pc-jwilson kthomas-nb
        accounts2 FRONTDESK-PC frontdesk-2.office.local boardroom-pc MARKETING-PC
        sales-laptop3 helpdesk01 DEVBOX-JAMES pc-fitzgerald nb-whitaker PC-HOLLOWAY
        pc-pemberton ws-blackwood
    """,
    "Apple": """
        Jamess-MacBook-Pro Sarahs-MacBook-Air Annas-MacBook-Pro Davids-iMac Emilys-iPhone
        Toms-Mac-mini MacBook-Pro-von-Bernd MacBook-Air-von-Sabine iMac-von-Gisela
        iPhone-von-Ute MacBook-Pro-de-Claire MacBook-Pro-di-Giulia MacBook-de-Carlos
        Lucas-iPad iPad-von-Tim Johns-MacBook-Pro-2 MacBook-Pro-4 iPhone-13 Kevins-iPhone
        Chloes-MBP Daniels-Air Annas-MacBook-Pro.local AnnasMacBookAir
    """,
    "French": """
        pc-dupont PC-MARTIN nb-bernard ws-dubois durand-pc LEFEBVRE-PC pc-moreau
        laurent-portable pc-accueil ACCUEIL-01 compta-pc pc-direction SECRETARIAT2 PC-ISABELLE
        nathalie-pc pc-francois poste-girard pc-rousseau portable-fontaine PC-BONNET
        pc-marchand PC-BRUNET nb-lemaire pc-chauvin
    """,
    "Turkish": """
        pc-yilmaz KAYA-PC nb-demir ws-sahin celik-pc YILDIZ-PC pc-ozturk aydin-laptop PC-ARSLAN
        dogan-pc pc-kilic mehmet-pc AYSE-PC pc-mustafa fatma-laptop EMRE-NB pc-muhasebe
        MUHASEBE-2 satis-pc pc-karakaya PC-BAYRAKTAR nb-kocabas ws-gunduz
    """,
    "Polish": """
        pc-kowalski NOWAK-PC nb-wisniewski ws-wojcik kowalczyk-pc KAMINSKI-PC pc-lewandowski
        zielinski-nb PC-SZYMANSKI wozniak-pc pc-dabrowski kozlowski-laptop pc-biuro2
        BIURO-KSIEGOWOSC pc-agnieszka KRZYSZTOF-PC pc-malgorzata grzegorz-nb pc-wojciech
        magdalena-pc pc-szczepanski chrzanowski-nb brzezinski-pc pc-pietrzyk PC-GRZYBOWSKI
        nb-chmielarz
    """,
    "Italian": """
        pc-rossi RUSSO-PC nb-ferrari ws-esposito bianchi-pc ROMANO-PC pc-colombo
        ricci-portatile PC-MARINO greco-pc pc-bruno gallo-nb pc-ufficio UFFICIO-TECNICO
        segreteria-pc pc-giuseppe FRANCESCA-PC pc-alessandro chiara-nb pc-amministrazione
        pc-bertolini PC-LOMBARDINI nb-castellano
    """,
    "Spanish and Portuguese": """
        pc-garcia FERNANDEZ-PC nb-gonzalez ws-rodriguez lopez-pc MARTINEZ-PC pc-sanchez
        perez-portatil PC-GOMEZ jimenez-pc pc-oficina RECEPCION-PC contabilidad-01 pc-javier
        CARMEN-PC pc-alejandro lucia-portatil almacen-pc pc-echeverria PC-IRIGOYEN
        nb-villalobos pc-oliveira souza-nb PC-FERREIRA pereira-laptop pc-goncalves
    """,
    "other European": """
        pc-dejong JANSEN-PC nb-devries ws-bakker pc-kantoor pc-andersson JOHANSSON-PC
        nb-karlsson ws-nilsson pc-hansen NIELSEN-PC pc-virtanen KORHONEN-PC pc-papadopoulos
        nb-georgiou ws-nikolaidis pc-konstantinou KARAGIANNIS-PC pc-nagy horvath-nb PC-SZABO
        kovacs-pc pc-toth pc-novotny dvorak-nb PC-SVOBODA prochazka-pc pc-popescu ionescu-nb
        PC-CONSTANTIN pc-ivanov petrova-nb PC-SMIRNOV kuznetsov-pc pc-shevchenko
        bondarenko-nb PC-KOVALENKO DeLaCruz-PC McDonald-PC VanDerBerg-PC
    """,
    "Asian and Middle Eastern": """
        pc-nguyen tran-laptop pc-zhang wang-laptop pc-sharma PATEL-PC pc-yamamoto pc-hosseini
        rahimi-nb PC-MOHAMMADI pc-karimi pc-haddad khalil-nb PC-MANSOUR pc-nasser pc-gupta
        singh-laptop PC-REDDY pc-krishnan venkatesh-pc pc-kimura tanaka-nb PC-WATANABE
        suzuki-laptop
    """,
    "Windows defaults": """
        DESKTOP-9QJ4V1M DESKTOP-A1B2C3D DESKTOP-TKLMNRS DESKTOP-5HG8FJK DESKTOP-PQ3R7ST
        LAPTOP-4KJ8H2QF LAPTOP-R3M5XQ1B LAPTOP-GH7J2K9L LAPTOP-ZXCV5BNM WIN-3KT9E6S0GQ1
        WIN-QJ4V8RTZ2MN WIN-7P3QHJ0L2KD WIN-R8T2M4VQX1N USER-PC ADMIN-PC OWNER-PC HOME-PC
        CHEF-PC MyHomePC
    """,
    "phones and tablets": """
        android-3f2a9c8b1d0e4f57 android-8d1c7e52a6b3f904 Galaxy-S21 Galaxy-A52s Pixel-7a
        HUAWEI_P30_Pro OnePlus-9-Pro Redmi-Note-10 Xperia-5 moto-g-power
    """,
    "printers and scanners": """
        NPI3F4A2B HP4C2B8A HPE4115B BRN30055C6A8B2F BRW7C2EB9D1A4F0 EPSON3A2B1C KM3A2B1C
        XRX0000AA123456 RNP002673D9C2B1 SEC30CDA7123456 ET0021B7C2D3E4 Canon-MF743C CANON3A2B1C
        KYOCERA-ECOSYS TASKalfa-3253ci bizhub-c258 MFC-L2710DW HL-L2350DW laserjet-m404
        OfficeJet-Pro-9020 drucker-og1 printer-floor2 imprimante-rdc stampante-ufficio
    """,
    "NAS and servers": """
        DiskStation-Keller DS918 DS220PLUS synology-nas qnap-ts453d TS-453D NAS-BACKUP
        readynas-01 mycloud-ex2 TrueNAS-01 fileserver01 SRV-DC01 srv-file01 dc01 DC02.corp.lan
        exchange01 mx1 relay01.studio.lan smtp-gw SBS2011 SERVER2019 ts01 terminalserver2
        backup-srv veeam-proxy vcenter01 esxi-host3 hyperv02 sql-prod01 datev-server
        citrix-xa01 kanzlei-srv praxis-server webserver01 intranet-srv printserver01 wsus01
        nextcloud-vm gitlab-runner raspberrypi4 kiosk-lobby conference-room-a meeting-room-2
        zeus-srv apollo-srv gandalf01 jupiter-srv.corp.lan
    """,
    "laptops by model": """
        Surface-Pro-7 ThinkPad-T480 LATITUDE-5420 OptiPlex-7090 ELITEBOOK-840 Lenovo-Yoga
        ASUS-VivoBook
    """,
}
REAL_NAMES = [name for names in REAL.values() for name in names.split()]

# Letter frequencies of English text, per cent: strings drawn from them are the hard case,
# common letters in an order no name has.
ENGLISH = {
    "e": 12.70, "t": 9.06, "a": 8.17, "o": 7.51, "i": 6.97, "n": 6.75, "s": 6.33, "h": 6.09,
    "r": 5.99, "d": 4.25, "l": 4.03, "c": 2.78, "u": 2.76, "m": 2.41, "w": 2.36, "f": 2.23,
    "g": 2.02, "y": 1.97, "p": 1.93, "b": 1.29, "v": 0.98, "k": 0.77, "j": 0.15, "x": 0.15,
    "q": 0.10, "z": 0.07,
}  # fmt: skip
DOMAINS = ("example.com", "studio.lan", "corp.lan", "mail-example.de", "office.local")
VOWELS = "aeiou"
CONSONANTS = "".join(c for c in string.ascii_lowercase if c not in VOWELS)
PER_GENERATOR = 200


def _letters(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 14)))


def _english(rng: random.Random) -> str:
    length = rng.randint(6, 14)
    drawn = "".join(rng.choices(list(ENGLISH), weights=list(ENGLISH.values()), k=length))
    return drawn if rng.random() < 0.5 else drawn.upper()


def _consonants(rng: random.Random) -> str:
    """A vowel about one letter in eight: what the old vowel-ratio rule was made for."""
    length = rng.randint(6, 14)
    return "".join(rng.choice(VOWELS if rng.random() < 0.12 else CONSONANTS) for _ in range(length))


def _mixed_case(rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in _letters(rng))


def _with_digits(rng: random.Random) -> str:
    label = list(_letters(rng))
    for _ in range(rng.randint(1, 3)):
        label.insert(rng.randint(0, len(label)), rng.choice(string.digits))
    return "".join(label)


def _before_domain(rng: random.Random) -> str:
    label = rng.choice((_letters, _english, _consonants))(rng)
    return f"{label}.{rng.choice(DOMAINS)}"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "uniform lower case": _letters,
    "uniform upper case": lambda rng: _letters(rng).upper(),
    "mixed case": _mixed_case,
    "English letter frequencies": _english,
    "consonant-heavy": _consonants,
    "with a few digits": _with_digits,
    "in front of a real-looking domain": _before_domain,
}
RANDOM = {
    kind: [make(rng) for _ in range(PER_GENERATOR)]
    for seed, (kind, make) in enumerate(GENERATORS.items())
    for rng in [random.Random(f"helo-{seed}")]
}
# Floors a little under the measured rates (bench/helo_names.py prints them)
FLOORS = {
    "uniform lower case": 0.95,
    "uniform upper case": 0.95,
    "mixed case": 0.95,
    "English letter frequencies": 0.85,
    "consonant-heavy": 0.95,
    "with a few digits": 0.90,
    "in front of a real-looking domain": 0.93,
}


def judged_random(name: str) -> bool:
    return "random-looking" in helo_anomalies(name, CLIENT, direct_to_mx=True)


def detection_rates() -> dict[str, float]:
    return {kind: sum(map(judged_random, names)) / len(names) for kind, names in RANDOM.items()}


def test_tables_are_large_and_distinct() -> None:
    assert len(REAL_NAMES) >= 200 and len(set(REAL_NAMES)) == len(REAL_NAMES)
    generated = [name for names in RANDOM.values() for name in names]
    assert len(generated) >= 200 and set(FLOORS) == set(RANDOM)


def test_no_test_name_is_in_the_training_list() -> None:
    words = helo.training_words()
    training = set(helo.training_names(words))
    names = REAL_NAMES + [name for names in RANDOM.values() for name in names]
    for name in names:
        assert name.lower() not in training
        assert name.lower().split(".", 1)[0] not in training


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_name_is_not_random(name: str) -> None:
    assert not judged_random(name), helo.letter_runs(name.split(".", 1)[0])


def test_random_names_are_caught() -> None:
    rates = detection_rates()
    overall = sum(rates.values()) / len(rates)
    shown = ", ".join(f"{kind} {rate:.0%}" for kind, rate in rates.items())
    assert overall >= 0.95, shown
    for kind, rate in rates.items():
        assert rate >= FLOORS[kind], shown


def test_threshold_is_the_fitted_one() -> None:
    centre, threshold = helo.fit(helo.training_words(), helo.FALSE_ALARM)
    assert centre == pytest.approx(helo.CENTRE, abs=1e-4)
    assert threshold == pytest.approx(helo.THRESHOLD, abs=1e-4)


@pytest.mark.parametrize(
    ("helo_name", "direct", "kinds"),
    [
        ("", True, []),
        ("   ", True, []),
        ("localhost", False, ["localhost"]),
        ("localhost", True, ["localhost", "no dot"]),
        ("localhost.localdomain", True, ["localhost"]),
        ("localhost.studio.lan", True, ["localhost"]),
        ("localhost-pc.studio.lan", True, []),
        ("192.168.0.108", True, ["bare IP address"]),
        ("192.168.0", True, []),
        ("[192.168.0.108]", True, []),
        ("[203.0.113.77]", True, ["address literal that is not the host's"]),
        ("[IPv6:2001:db8::1]", True, ["address literal that is not the host's"]),
        ("[IPv6:fe80::abcd:ef12:dcba]", True, ["address literal that is not the host's"]),
        ("RECEPTION-PC", True, ["no dot"]),
        ("RECEPTION-PC", False, []),
        ("DESKTOP-7F3K2QH", True, ["no dot"]),
        ("DESKTOP-7F3K2QH", False, []),
        ("reception-pc.studio.lan", True, []),
        ("outlook.com", True, ["a big company's domain"]),
        ("mail.yahoo.com", False, ["a big company's domain"]),
        ("yahoo.com.example.net", True, []),
        ("173-66-46-112.wash.fios.verizon.net", True, ["an ISP's dynamic-address name"]),
        ("dsl.173.66.46.112.example.net", True, ["an ISP's dynamic-address name"]),
        ("173-66-46.example.net", True, []),
        ("xkcdvwqrt.example.com", True, ["random-looking"]),
        ("VKDVZAHG", True, ["no dot", "random-looking"]),
        ("VKDVZAHG", False, ["random-looking"]),
        ("qwrtzplk.studio.lan", False, ["random-looking"]),
        ("mail.qwrtzplk.example", False, []),  # only the first label is judged
    ],
)
def test_helo_anomalies(helo_name: str, direct: bool, kinds: list[str]) -> None:
    assert helo_anomalies(helo_name, CLIENT, direct_to_mx=direct) == kinds


def test_address_literal_of_the_host_itself() -> None:
    assert helo_anomalies("[IPv6:2001:DB8::1]", "2001:db8::1", direct_to_mx=True) == []


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("qzxkj", False),  # five letters: too few to judge
        ("qzxkjw", True),
        ("qz1xk2j", False),  # digits do not count as letters
        ("qz1xk2jw", True),
        ("DESKTOP-QZXKJWV", False),  # Windows' own random name
        ("DESKTOP-QZXKJWVB", True),  # one letter too many for it
        ("LAPTOP-QZXKJWVB", False),
        ("WIN-QZXKJWVBNMT", False),
        ("BRN30055C6A8B2F", False),  # a MAC address after the vendor's code
        ("vKdVzAhG", True),  # case flipping every letter or two
        ("MacBookPro", False),
        ("kbrandt", False),  # an initial glued to a surname
        ("jsmith", False),
        ("ylmf-pc", True),  # Cutwail's HELO
    ],
)
def test_random_looking(label: str, expected: bool) -> None:
    assert random_looking(label) is expected


def test_letter_runs_set_aside_serials_and_single_letters() -> None:
    assert helo.letter_runs("android-3f2a9c8b1d0e4f57") == ["android"]
    assert helo.letter_runs("HL-L2350DW-office") == ["hl", "dw", "office"]
    assert helo.letter_runs("pc-frank") == ["pc", "frank"]
    assert helo.letter_runs("pc-tom") is None
