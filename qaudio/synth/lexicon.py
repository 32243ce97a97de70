"""The aligned English / German / French lexicon of the synthetic corpus's sentence grammar.

Every entry gives the word in all three languages with what the grammar needs to inflect it
(German gender and plural, French gender, plural and adjective position), so that every
sentence of :mod:`qaudio.synth.grammar` has one exact translation in each direction. The
lexicon is one-to-one per language (no two English words share a German or French word),
which keeps translation back into English exact too; ``tests/test_synth_grammar.py`` checks it.

References for the inflection it encodes: Duden, "Die Grammatik" (German adjective
declension after the definite article and without article); Grevisse, "Le bon usage"
(French elision, contraction of de + le, position of adjectives).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    key: str
    cls: str  # obj | food | animal | surface | person
    en: str
    en_pl: str
    de_g: str  # m | f | n
    de: str
    de_pl: str
    fr_g: str  # m | f
    fr: str
    fr_pl: str


@dataclass(frozen=True)
class Adjective:
    key: str
    en: str
    de_stem: str  # the stem inflected forms take ("teur" for "teuer")
    fr: tuple[str, ...]  # masc sg, fem sg, masc pl, fem pl
    fr_before: bool  # French position: before the noun (petit, grand ...) or after (colours ...)
    classes: frozenset[str]  # noun classes it describes

    def fr_form(self, gender: str, plural: bool) -> str:
        return self.fr[(gender == "f") + 2 * plural]


@dataclass(frozen=True)
class Verb:
    key: str
    en: str  # third person singular present, or the simple past for past-tense verbs
    de: str  # third person singular present, or the past participle (perfect with "hat")
    fr: str  # third person singular present, or the past participle (passé composé with "a")
    classes: frozenset[str]  # classes of the nouns it takes as object


@dataclass(frozen=True)
class Phrase:
    """A fixed phrase given whole in each language (a place with its preposition, a preposition)."""

    key: str
    en: str
    de: str
    fr: str


def _rows(table: str) -> list[list[list[str]]]:
    """Rows of a ``|``-separated table; each cell split on whitespace. Lines with # are comments."""
    rows = []
    for line in table.strip().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append([cell.split() for cell in line.split("|")])
    return rows


# key | en sg pl | de gender sg pl | fr gender sg pl
_NOUNS = {
    "obj": """
    book      | book books           | n Buch Bücher               | m livre livres
    cup       | cup cups             | f Tasse Tassen              | f tasse tasses
    bottle    | bottle bottles       | f Flasche Flaschen          | f bouteille bouteilles
    key       | key keys             | m Schlüssel Schlüssel       | f clé clés
    bag       | bag bags             | f Tasche Taschen            | m sac sacs
    box       | box boxes            | f Kiste Kisten              | f boîte boîtes
    lamp      | lamp lamps           | f Lampe Lampen              | f lampe lampes
    letter    | letter letters       | m Brief Briefe              | f lettre lettres
    pen       | pen pens             | m Stift Stifte              | m stylo stylos
    plate     | plate plates         | m Teller Teller             | f assiette assiettes
    glass     | glass glasses        | n Glas Gläser               | m verre verres
    hat       | hat hats             | m Hut Hüte                  | m chapeau chapeaux
    ball      | ball balls           | m Ball Bälle                | m ballon ballons
    phone     | phone phones         | n Telefon Telefone          | m téléphone téléphones
    clock     | clock clocks         | f Uhr Uhren                 | f horloge horloges
    picture   | picture pictures     | n Bild Bilder               | m tableau tableaux
    spoon     | spoon spoons         | m Löffel Löffel             | f cuillère cuillères
    knife     | knife knives         | n Messer Messer             | m couteau couteaux
    shoe      | shoe shoes           | m Schuh Schuhe              | f chaussure chaussures
    coat      | coat coats           | m Mantel Mäntel             | m manteau manteaux
    ticket    | ticket tickets       | f Fahrkarte Fahrkarten      | m billet billets
    umbrella  | umbrella umbrellas   | m Regenschirm Regenschirme  | m parapluie parapluies
    candle    | candle candles       | f Kerze Kerzen              | f bougie bougies
    basket    | basket baskets       | m Korb Körbe                | m panier paniers
    map       | map maps             | f Landkarte Landkarten      | f carte cartes
    towel     | towel towels         | n Handtuch Handtücher       | f serviette serviettes
    blanket   | blanket blankets     | f Decke Decken              | f couverture couvertures
    toy       | toy toys             | n Spielzeug Spielzeuge      | m jouet jouets
    bucket    | bucket buckets       | m Eimer Eimer               | m seau seaux
    """,
    "food": """
    apple     | apple apples         | m Apfel Äpfel               | f pomme pommes
    banana    | banana bananas       | f Banane Bananen            | f banane bananes
    cake      | cake cakes           | m Kuchen Kuchen             | m gâteau gâteaux
    egg       | egg eggs             | n Ei Eier                   | m œuf œufs
    orange    | orange oranges       | f Orange Orangen            | f orange oranges
    lemon     | lemon lemons         | f Zitrone Zitronen          | m citron citrons
    tomato    | tomato tomatoes      | f Tomate Tomaten            | f tomate tomates
    carrot    | carrot carrots       | f Karotte Karotten          | f carotte carottes
    cheese    | cheese cheeses       | m Käse Käse                 | m fromage fromages
    pear      | pear pears           | f Birne Birnen              | f poire poires
    cookie    | cookie cookies       | m Keks Kekse                | m biscuit biscuits
    onion     | onion onions         | f Zwiebel Zwiebeln          | m oignon oignons
    melon     | melon melons         | f Melone Melonen            | m melon melons
    """,
    "animal": """
    dog       | dog dogs             | m Hund Hunde                | m chien chiens
    cat       | cat cats             | f Katze Katzen              | m chat chats
    horse     | horse horses         | n Pferd Pferde              | m cheval chevaux
    bird      | bird birds           | m Vogel Vögel               | m oiseau oiseaux
    cow       | cow cows             | f Kuh Kühe                  | f vache vaches
    mouse     | mouse mice           | f Maus Mäuse                | f souris souris
    rabbit    | rabbit rabbits       | n Kaninchen Kaninchen       | m lapin lapins
    duck      | duck ducks           | f Ente Enten                | m canard canards
    fish      | fish fish            | m Fisch Fische              | m poisson poissons
    sheep     | sheep sheep          | n Schaf Schafe              | m mouton moutons
    goat      | goat goats           | f Ziege Ziegen              | f chèvre chèvres
    pig       | pig pigs             | n Schwein Schweine          | m cochon cochons
    frog      | frog frogs           | m Frosch Frösche            | f grenouille grenouilles
    """,
    # things other things are on, under, next to ... (used in the singular)
    "surface": """
    table     | table tables         | m Tisch Tische              | f table tables
    desk      | desk desks           | m Schreibtisch Schreibtische | m bureau bureaux
    bed       | bed beds             | n Bett Betten               | m lit lits
    shelf     | shelf shelves        | n Regal Regale              | f étagère étagères
    sofa      | sofa sofas           | n Sofa Sofas                | m canapé canapés
    chair     | chair chairs         | m Stuhl Stühle              | f chaise chaises
    bench     | bench benches        | f Bank Bänke                | m banc bancs
    car       | car cars             | n Auto Autos                | f voiture voitures
    fridge    | fridge fridges       | m Kühlschrank Kühlschränke  | m frigo frigos
    """,
    # sentence subjects (always singular, nominative)
    "person": """
    teacher   | teacher teachers     | m Lehrer Lehrer             | m professeur professeurs
    doctor    | doctor doctors       | m Arzt Ärzte                | m médecin médecins
    farmer    | farmer farmers       | m Bauer Bauern              | m fermier fermiers
    child     | child children       | n Kind Kinder               | m enfant enfants
    woman     | woman women          | f Frau Frauen               | f femme femmes
    man       | man men              | m Mann Männer               | m homme hommes
    girl      | girl girls           | n Mädchen Mädchen           | f fille filles
    boy       | boy boys             | m Junge Jungen              | m garçon garçons
    baker     | baker bakers         | m Bäcker Bäcker             | m boulanger boulangers
    driver    | driver drivers       | m Fahrer Fahrer             | m chauffeur chauffeurs
    neighbor  | neighbor neighbors   | m Nachbar Nachbarn          | m voisin voisins
    student   | student students     | m Student Studenten         | m étudiant étudiants
    cook      | cook cooks           | m Koch Köche                | m cuisinier cuisiniers
    grandmother | grandmother grandmothers | f Großmutter Großmütter | f grand-mère grands-mères
    nurse     | nurse nurses         | f Krankenschwester Krankenschwestern | f infirmière infirmières
    pilot     | pilot pilots         | m Pilot Piloten             | m pilote pilotes
    """,
}

# key | en | de stem | fr masc sg, fem sg, masc pl, fem pl | fr position | noun classes
_ADJECTIVES = """
red       | red       | rot      | rouge rouge rouges rouges              | after  | obj animal food
blue      | blue      | blau     | bleu bleue bleus bleues                | after  | obj animal
green     | green     | grün     | vert verte verts vertes                | after  | obj animal food
yellow    | yellow    | gelb     | jaune jaune jaunes jaunes              | after  | obj animal food
black     | black     | schwarz  | noir noire noirs noires                | after  | obj animal
white     | white     | weiß     | blanc blanche blancs blanches          | after  | obj animal
brown     | brown     | braun    | brun brune bruns brunes                | after  | obj animal food
grey      | grey      | grau     | gris grise gris grises                 | after  | obj animal
small     | small     | klein    | petit petite petits petites            | before | obj animal food
big       | big       | groß     | grand grande grands grandes            | before | obj animal food
heavy     | heavy     | schwer   | lourd lourde lourds lourdes            | after  | obj
clean     | clean     | sauber   | propre propre propres propres          | after  | obj
dirty     | dirty     | schmutzig | sale sale sales sales                 | after  | obj animal
empty     | empty     | leer     | vide vide vides vides                  | after  | obj
expensive | expensive | teur     | cher chère chers chères                | after  | obj food
soft      | soft      | weich    | doux douce doux douces                 | after  | obj animal
warm      | warm      | warm     | chaud chaude chauds chaudes            | after  | obj food
cold      | cold      | kalt     | froid froide froids froides            | after  | obj food
fresh     | fresh     | frisch   | frais fraîche frais fraîches           | after  | food
sweet     | sweet     | süß      | sucré sucrée sucrés sucrées            | after  | food
ripe      | ripe      | reif     | mûr mûre mûrs mûres                    | after  | food
young     | young     | jung     | jeune jeune jeunes jeunes              | before | animal
pretty    | pretty    | hübsch   | joli jolie jolis jolies                | before | obj animal
happy     | happy     | fröhlich | joyeux joyeuse joyeux joyeuses         | after  | animal
lazy      | lazy      | faul     | paresseux paresseuse paresseux paresseuses | after | animal
hungry    | hungry    | hungrig  | affamé affamée affamés affamées        | after  | animal
"""

# key | en | de | fr | object classes
_VERBS_PRESENT = """
buy   | buys    | kauft    | achète  | obj food animal
see   | sees    | sieht    | voit    | obj food animal
take  | takes   | nimmt    | prend   | obj food
find  | finds   | findet   | trouve  | obj animal
clean | cleans  | putzt    | nettoie | obj
carry | carries | trägt    | porte   | obj animal
like  | likes   | mag      | aime    | obj food animal
wash  | washes  | wäscht   | lave    | obj animal
sell  | sells   | verkauft | vend    | obj food animal
hold  | holds   | hält     | tient   | obj animal
eat   | eats    | isst     | mange   | food
feed  | feeds   | füttert  | nourrit | animal
paint | paints  | malt     | peint   | obj animal
bring | brings  | bringt   | apporte | obj food
"""

# key | en simple past | de participle | fr participle | object classes
_VERBS_PAST = """
see   | saw     | gesehen   | vu     | obj food animal
find  | found   | gefunden  | trouvé | obj animal
count | counted | gezählt   | compté | obj food animal
buy   | bought  | gekauft   | acheté | obj food animal
sell  | sold    | verkauft  | vendu  | obj food animal
wash  | washed  | gewaschen | lavé   | obj animal
feed  | fed     | gefüttert | nourri | animal
paint | painted | gemalt    | peint  | obj animal
"""

# "in the park": each language's idiomatic preposition and article, given whole
_PLACES = """
park     | in the park      | im Park          | dans le parc
kitchen  | in the kitchen   | in der Küche     | dans la cuisine
garden   | in the garden    | im Garten        | dans le jardin
school   | at the school    | in der Schule    | à l'école
station  | at the station   | am Bahnhof       | à la gare
market   | at the market    | auf dem Markt    | au marché
library  | in the library   | in der Bibliothek | à la bibliothèque
house    | in the house     | im Haus          | dans la maison
forest   | in the forest    | im Wald          | dans la forêt
room     | in the room      | im Zimmer        | dans la chambre
shop     | in the shop      | im Laden         | dans le magasin
church   | in the church    | in der Kirche    | dans l'église
hospital | at the hospital  | im Krankenhaus   | à l'hôpital
hotel    | in the hotel     | im Hotel         | à l'hôtel
museum   | in the museum    | im Museum        | au musée
bakery   | in the bakery    | in der Bäckerei  | à la boulangerie
village  | in the village   | im Dorf          | au village
harbor   | at the harbor    | im Hafen         | au port
city     | in the city      | in der Stadt     | en ville
garage   | in the garage    | in der Garage    | dans le garage
street   | on the street    | auf der Straße   | dans la rue
"""

# Spatial prepositions; German takes the dative for where something is and the accusative
# for where something is put (Wechselpräpositionen).
_PREPOSITIONS = """
on       | on          | auf    | sur
under    | under       | unter  | sous
nextto   | next to     | neben  | à côté de
behind   | behind      | hinter | derrière
infront  | in front of | vor    | devant
"""

_NUMBERS = """
2  | two       | zwei      | deux
3  | three     | drei      | trois
4  | four      | vier      | quatre
5  | five      | fünf      | cinq
6  | six       | sechs     | six
7  | seven     | sieben    | sept
8  | eight     | acht      | huit
9  | nine      | neun      | neuf
10 | ten       | zehn      | dix
11 | eleven    | elf       | onze
12 | twelve    | zwölf     | douze
13 | thirteen  | dreizehn  | treize
14 | fourteen  | vierzehn  | quatorze
15 | fifteen   | fünfzehn  | quinze
16 | sixteen   | sechzehn  | seize
17 | seventeen | siebzehn  | dix-sept
18 | eighteen  | achtzehn  | dix-huit
19 | nineteen  | neunzehn  | dix-neuf
20 | twenty    | zwanzig   | vingt
30 | thirty    | dreißig   | trente
40 | forty     | vierzig   | quarante
50 | fifty     | fünfzig   | cinquante
"""


def _nouns() -> dict[str, list[Noun]]:
    out = {}
    for cls, table in _NOUNS.items():
        out[cls] = [
            Noun(key[0], cls, en[0], en[1], de[0], de[1], de[2], fr[0], fr[1], fr[2])
            for key, en, de, fr in _rows(table)
        ]
    return out


def _phrases(table: str) -> list[Phrase]:
    return [Phrase(key[0], " ".join(en), " ".join(de), " ".join(fr)) for key, en, de, fr in _rows(table)]


def _verbs(table: str) -> list[Verb]:
    return [Verb(k[0], en[0], de[0], fr[0], frozenset(c)) for k, en, de, fr, c in _rows(table)]


NOUNS: dict[str, list[Noun]] = _nouns()
ADJECTIVES: list[Adjective] = [
    Adjective(k[0], en[0], de[0], tuple(fr), pos[0] == "before", frozenset(c))
    for k, en, de, fr, pos, c in _rows(_ADJECTIVES)
]
VERBS_PRESENT: list[Verb] = _verbs(_VERBS_PRESENT)
VERBS_PAST: list[Verb] = _verbs(_VERBS_PAST)
PLACES: list[Phrase] = _phrases(_PLACES)
PREPOSITIONS: list[Phrase] = _phrases(_PREPOSITIONS)
NUMBERS: list[Phrase] = _phrases(_NUMBERS)
COUNTS: list[Phrase] = [n for n in NUMBERS if int(n.key) <= 12]  # how many things there are
