"""One object / scene vocabulary across NYU, SUN RGB-D and the synthetic world.

Raw names differ in case, separators and wording ("night_stand", "nightstand", "Night Stand"); the
benchmark needs one spelling per concept so that a distractor is never the answer under another name.
`normalize_object_name` folds spelling and true synonyms onto one canonical name; `CONFUSABLE_GROUPS`
lists different concepts still too close to be fair distractors of each other (a desk vs a table).
"""

from __future__ import annotations

import re

# raw spelling (after lower-casing and separator folding) -> canonical name
OBJECT_SYNONYMS: dict[str, str] = {
    "nightstand": "night stand",
    "night table": "night stand",
    "bedside table": "night stand",
    "couch": "sofa",
    "settee": "sofa",
    "tv": "television",
    "tv stand": "television stand",
    "television set": "television",
    "monitor": "computer monitor",
    "computer screen": "computer monitor",
    "book shelf": "bookshelf",
    "bookcase": "bookshelf",
    "book case": "bookshelf",
    "books": "book",
    "fridge": "refrigerator",
    "refridgerator": "refrigerator",  # sic, in the NYU-40 / SUN-37 class lists
    "shelves": "shelf",
    "garbage bin": "trash can",
    "garbage can": "trash can",
    "waste bin": "trash can",
    "wastebasket": "trash can",
    "recycle bin": "trash can",
    "bin": "trash can",
    "tap": "faucet",
    "wc": "toilet",
    "toilet seat": "toilet",
    "pillows": "pillow",
    "cushion": "pillow",
    "rug": "carpet",
    "floor mat": "carpet",
    "blinds": "blind",
    "curtains": "curtain",
    "drape": "curtain",
    "drapes": "curtain",
    "whiteboard": "white board",
    "blackboard": "black board",
    "chalkboard": "black board",
    "lamp shade": "lamp",
    "table lamp": "lamp",
    "floor lamp": "lamp",
    "ottoman": "stool",
    "footstool": "stool",
    "dresser mirror": "mirror",
    "sink counter": "counter",
    "countertop": "counter",
    "kitchen counter": "counter",
    "bath tub": "bathtub",
    "tub": "bathtub",
    "cupboard": "cabinet",
    "kitchen cabinet": "cabinet",
    "file cabinet": "filing cabinet",
    "office chair": "chair",
    "desk chair": "chair",
    "armchair": "chair",
    "arm chair": "chair",
    "laptop computer": "laptop",
    "notebook computer": "laptop",
    "printer machine": "printer",
    "plant pot": "plant",
    "potted plant": "plant",
    "flower pot": "plant",
    "photo": "picture",
    "painting": "picture",
    "poster": "picture",
    "frame": "picture",
    "picture frame": "picture",
}

# different concepts a person could reasonably confuse; never offered against each other
CONFUSABLE_GROUPS: list[frozenset[str]] = [
    frozenset({"table", "desk", "coffee table", "dining table", "side table", "end table", "counter"}),
    frozenset({"chair", "stool", "sofa", "bench", "sofa chair"}),
    frozenset(
        {
            "cabinet",
            "dresser",
            "drawer",
            "chest",
            "wardrobe",
            "closet",
            "filing cabinet",
            "shelf",
            "bookshelf",
        }
    ),
    frozenset({"television", "computer monitor", "screen", "laptop"}),
    frozenset({"picture", "mirror", "white board", "black board"}),
    frozenset({"curtain", "blind", "window"}),
    frozenset({"pillow", "blanket", "bed"}),
    frozenset({"box", "bag", "basket", "container"}),
    frozenset({"sink", "bathtub"}),
    frozenset({"night stand", "side table", "end table", "dresser"}),
    frozenset({"lamp", "light"}),
    frozenset({"door", "doorframe"}),
]

# names that describe structure or nothing at all, never a sensible question target
STRUCTURAL_NAMES = frozenset(
    {
        "wall",
        "floor",
        "ceiling",
        "unknown",
        "other",
        "others",
        "otherprop",
        "otherstructure",
        "otherfurniture",
        "object",
        "objects",
        "stuff",
        "misc",
        "",
    }
)

# ImageBind / LanguageBind NYU-D zero-shot protocol: 9 named classes, every other NYU scene type is "others"
NYU10_CLASSES: tuple[str, ...] = (
    "bathroom",
    "bedroom",
    "bookstore",
    "classroom",
    "dining room",
    "home office",
    "kitchen",
    "living room",
    "office",
    "others",
)
NYU10_NAMED_CLASSES: tuple[str, ...] = NYU10_CLASSES[:-1]  # without the catch-all "others"

# Scene-classification questions are asked only for scenes in this list and take their wrong options from it:
# it holds every NYU-D class the benchmark asks about, plus other common indoor scenes.
SCENE_VOCABULARY: tuple[str, ...] = (
    *NYU10_NAMED_CLASSES,
    "conference room",
    "corridor",
    "library",
    "furniture store",
    "lab",
)
# The objects the instruction generators know by name: Recognition's wrong options, Security's absent objects.
OBJECT_VOCABULARY: tuple[str, ...] = (
    "bathtub",
    "bed",
    "bookshelf",
    "box",
    "cabinet",
    "chair",
    "computer monitor",
    "counter",
    "curtain",
    "desk",
    "door",
    "dresser",
    "lamp",
    "laptop",
    "mirror",
    "night stand",
    "picture",
    "pillow",
    "plant",
    "refrigerator",
    "shelf",
    "sink",
    "sofa",
    "table",
    "television",
    "toilet",
    "towel",
    "trash can",
    "whiteboard",
    "window",
    "printer",
    "piano",
    "stool",
    "bench",
    "oven",
    "microwave",
    "clock",
    "vase",
    "bottle",
    "cup",
    "bowl",
    "book",
    "keyboard",
    "backpack",
    "suitcase",
    "umbrella",
    "fan",
    "radiator",
)

# spellings of one scene concept across sources
SCENE_SYNONYMS: dict[str, str] = {
    "computer lab": "computer room",
    "lecture hall": "lecture theatre",
    "lecture theater": "lecture theatre",
}

# scene classes too close to be fair distractors of each other (SUN RGB-D keeps them apart as labels)
SCENE_CONFUSABLE_GROUPS: list[frozenset[str]] = [
    frozenset({"dining room", "dining area", "dinette"}),
    frozenset({"office", "home office", "study space", "study", "study room"}),
    frozenset({"classroom", "lecture theatre"}),
    frozenset({"lab", "computer room"}),
    frozenset({"rest space", "discussion area", "living room"}),
    frozenset({"library", "bookstore"}),
]


def fold_name(raw: str) -> str:
    """Lower case, '_' / '-' / repeated blanks -> one space, trailing instance digits dropped."""
    name = str(raw).strip().lower()
    name = re.sub(r"[_\-/]+", " ", name)
    name = re.sub(r"\s*\d+$", "", name)  # "chair 2", "chair_2"
    return re.sub(r"\s+", " ", name).strip()


def normalize_object_name(raw: str) -> str:
    """The canonical object name ("Night_Stand" -> "night stand", "couch" -> "sofa")."""
    name = fold_name(raw)
    return OBJECT_SYNONYMS.get(name, name)


def is_question_worthy(name: str) -> bool:
    """False for structure (wall, floor) and catch-all names, which make meaningless questions."""
    return name not in STRUCTURAL_NAMES and not name.startswith("other")


def confusable(a: str, b: str) -> bool:
    """True when `a` and `b` are the same concept or too close to be fair distractors of each other."""
    if a == b:
        return True
    if a in b.split() or b in a.split():  # "table" / "coffee table"
        return True
    return any(a in group and b in group for group in CONFUSABLE_GROUPS)


def normalize_scene_name(raw: str) -> str:
    """Scene type in the benchmark's style ("living_room" -> "living room", "dinette" -> "dining room")."""
    name = fold_name(raw)
    name = re.sub(r"\s*\d+[a-z]?$", "", name)  # NYU sequence ids like "kitchen_0028a"
    return SCENE_SYNONYMS.get(name, name)


def scenes_confusable(a: str, b: str) -> bool:
    """True when scene classes `a` and `b` should not be offered against each other."""
    return a == b or any(a in group and b in group for group in SCENE_CONFUSABLE_GROUPS)


def nyu10_scene_class(scene_type: str) -> str:
    """Map one of the 27 NYU scene types (any spelling) onto the 10-class zero-shot protocol."""
    name = fold_name(scene_type)
    return name if name in NYU10_NAMED_CLASSES else "others"


# --------------------------------------------------------------------------------------------------
# The sources' own class lists: the readers drop (and count) a scene label or an object name outside
# them, so a garbage label never becomes an answer or another scene's distractor.
# --------------------------------------------------------------------------------------------------

# NYU Depth V2's 27 scene types (the labeled set's `sceneTypes`; "excercise" sic)
NYU_SCENE_TYPES: tuple[str, ...] = (
    "basement", "bathroom", "bedroom", "bookstore", "cafe", "classroom", "computer_lab", "conference_room",
    "dinette", "dining_room", "excercise_room", "foyer", "furniture_store", "home_office", "home_storage",
    "indoor_balcony", "kitchen", "laundry_room", "living_room", "office", "office_kitchen", "playroom",
    "printer_room", "reception_room", "student_lounge", "study", "study_room",
)
# SUN RGB-D's scene labels: every value its frames' scene.txt hold (10295 frames), "idk" (undecided) aside
SUNRGBD_SCENE_TYPES: tuple[str, ...] = (
    "basement", "bathroom", "bedroom", "bookstore", "cafeteria", "classroom", "coffee_room", "computer_room",
    "conference_room", "corridor", "dancing_room", "dinette", "dining_area", "dining_room",
    "discussion_area", "exhibition", "furniture_store", "gym", "home", "home_office", "hotel_room",
    "indoor_balcony", "kitchen", "lab", "laundromat", "lecture_theatre", "library", "living_room", "lobby",
    "mail_room", "music_room", "office", "office_dining", "office_kitchen", "playroom", "printer_room",
    "reception", "reception_room", "recreation_room", "rest_space", "stairs", "storage_room", "study",
    "study_space",
)
# NYU Depth V2's 894 object names (classMapping40.mat, label order); SUN RGB-D reuses NYU's naming
NYU894_OBJECT_NAMES: tuple[str, ...] = tuple(
    (
        "book|bottle|cabinet|ceiling|chair|cone|counter|dishwasher|faucet|fire extinguisher|floor|"
        "garbage bin|microwave|paper towel dispenser|paper|pot|refridgerator|stove burner|table|unknown|wall|"
        "bowl|magnet|sink|air vent|box|door knob|door|scissor|tape dispenser|telephone cord|telephone|"
        "track light|cork board|cup|desk|laptop|air duct|basket|camera|pipe|shelves|stacked chairs|"
        "styrofoam object|whiteboard|computer|keyboard|ladder|monitor|stand|bar|motion camera|"
        "projector screen|speaker|bag|clock|green screen|mantel|window|ball|hole puncher|light|"
        "manilla envelope|picture|mail shelf|printer|stapler|fax machine|folder|jar|magazine|ruler|"
        "cable modem|fan|file|hand sanitizer|paper rack|vase|air conditioner|blinds|flower|plant|sofa|stereo|"
        "books|exit sign|room divider|bookshelf|curtain|projector|modem|wire|water purifier|column|hooks|"
        "hanging hooks|pen|electrical outlet|doll|eraser|pencil holder|water carboy|mouse|cable rack|"
        "wire rack|flipboard|map|paper cutter|tape|thermostat|heater|circuit breaker box|paper towel|stamp|"
        "duster|poster case|whiteboard marker|ethernet jack|pillow|hair brush|makeup brush|mirror|"
        "shower curtain|toilet|toiletries bag|toothbrush holder|toothbrush|toothpaste|platter|rug|"
        "squeeze tube|shower cap|soap|towel rod|towel|bathtub|candle|tissue box|toilet paper|container|"
        "clothes|electric toothbrush|floor mat|lamp|drum|flower pot|banana|candlestick|shoe|stool|urn|"
        "earplugs|mailshelf|placemat|excercise ball|alarm clock|bed|night stand|deoderant|headphones|"
        "headboard|basketball hoop|foot rest|laundry basket|sock|football|mens suit|cable box|dresser|"
        "dvd player|shaver|television|contact lens solution bottle|drawer|remote control|cologne|"
        "stuffed animal|lint roller|tray|lock|purse|toy bottle|crate|vasoline|gift wrapping roll|"
        "wall decoration|hookah|radio|bicycle|pen box|mask|shorts|hat|hockey glove|hockey stick|vuvuzela|dvd|"
        "chessboard|suitcase|calculator|flashcard|staple remover|umbrella|bench|yoga mat|backpack|cd|sign|"
        "hangers|notebook|hanger|security camera|folders|clothing hanger|stairs|glass rack|saucer|tag|dolly|"
        "machine|trolly|shopping baskets|gate|bookrack|blackboard|coffee bag|coffee packet|hot water heater|"
        "muffins|napkin dispenser|plaque|plastic tub|plate|coffee machine|napkin holder|radiator|"
        "coffee grinder|oven|plant pot|scarf|spice rack|stove|tea kettle|napkin|bag of chips|bread|"
        "cutting board|dish brush|serving spoon|sponge|toaster|cooking pan|kitchen items|ladel|spatula|"
        "spice stand|trivet|knife rack|knife|baking dish|dish scrubber|drying rack|vessel|kichen towel|"
        "tin foil|kitchen utensil|utensil|blender|garbage bag|sink protector|box of ziplock bags|"
        "spice bottle|pitcher|pizza box|toaster oven|step stool|vegetable peeler|washing machine|can opener|"
        "can of food|paper towel holder|spoon stand|spoon|wooden kitchen utensils|bag of flour|fruit|"
        "sheet of metal|waffle maker|cake|cell phone|tv stand|tablecloth|wine glass|sculpture|wall stand|"
        "iphone|coke bottle|piano|wine rack|guitar|light switch|shirts in hanger|router|glass pot|cart|"
        "vacuum cleaner|bin|coins|hand sculpture|ipod|jersey|blanket|ironing board|pen stand|mens tie|"
        "glass baking dish|utensils|frying pan|shopping cart|plastic bowl|wooden container|onion|potato|"
        "jacket|dvds|surge protector|tumbler|broom|can|crock pot|person|salt shaker|wine bottle|apple|"
        "eye glasses|menorah|bicycle helmet|fire alarm|water fountain|humidifier|necklace|chandelier|barrel|"
        "chest|decanter|wooden utensils|globe|sheets|fork|napkin ring|gift wrapping|bed sheets|spot light|"
        "lighting track|cannister|coffee table|mortar and pestle|stack of plates|ottoman|server|"
        "salt container|utensil container|phone jack|switchbox|casserole dish|oven handle|whisk|dish cover|"
        "electric mixer|decorative platter|drawer handle|fireplace|stroller|bookend|table runner|typewriter|"
        "ashtray|key|suit jacket|range hood|cleaning wipes|six pack of beer|decorative plate|watch|balloon|"
        "ipad|coaster|whiteboard eraser|toy|toys basket|toy truck|classroom board|chart stand|"
        "picture of fish|plastic box|pencil|carton|walkie talkie|binder|coat hanger|filing shelves|"
        "plastic crate|plastic rack|plastic tray|flag|poster board|lunch bag|board|leg of a girl|file holder|"
        "chart|glass pane|cardboard tube|bassinet|toy car|toy shelf|toy bin|toys shelf|educational display|"
        "placard|soft toy group|soft toy|toy cube|toy cylinder|toy rectangle|toy triangle|bucket|chalkboard|"
        "game table|storage shelvesbooks|toy cuboid|toy tree|wooden toy|toy box|toy phone|toy sink|toyhouse|"
        "notecards|toy trucks|wall hand sanitizer dispenser|cap stand|music stereo|toys rack|display board|"
        "lid of jar|stacked bins  boxes|stacked plastic racks|storage rack|roll of paper towels|cables|"
        "power surge|cardboard sheet|banister|show piece|pepper shaker|kitchen island|excercise equipment|"
        "treadmill|ornamental plant|piano bench|sheet music|grandfather clock|iron grill|pen holder|toy doll|"
        "globe stand|telescope|magazine holder|file container|paper holder|flower box|pyramid|desk mat|"
        "cordless phone|desk drawer|envelope|window frame|id card|file stand|paper weight|toy plane|money|"
        "papers|comforter|crib|doll house|toy chair|toy sofa|plastic chair|toy house|child carrier|cloth bag|"
        "cradle|baby chair|chart roll|toys box|railing|clothing dryer|clothing washer|laundry detergent jug|"
        "clothing detergent|bottle of soap|box of paper|trolley|hand sanitizer dispenser|soap holder|"
        "water dispenser|photo|water cooler|foosball table|crayon|hoola hoop|horse toy|plastic toy container|"
        "pool table|game system|pool sticks|console system|video game|pool ball|trampoline|tricycle|wii|"
        "furniture|alarm|toy table|ornamental item|copper vessel|stick|car|mezuza|toy cash register|lid|"
        "paper bundle|business cards|clipboard|flatbed scanner|paper tray|mouse pad|display case|"
        "tree sculpture|basketball|fiberglass case|framed certificate|cordless telephone|shofar|trophy|"
        "cleaner|cloth drying stand|electric box|furnace|piece of wood|wooden pillar|drying stand|cane|"
        "clothing drying rack|iron box|excercise machine|sheet|rope|sticks|wooden planks|toilet plunger|"
        "bar of soap|toilet bowl brush|light bulb|drain|faucet handle|nailclipper|shaving cream|"
        "rolled carpet|clothing iron|window cover|charger and wire|quilt|mattress|hair dryer|stones|"
        "pepper grinder|cat cage|dish rack|curtain rod|calendar|head phones|cd disc|head phone|usb drive|"
        "water heater|pan|tuna cans|baby gate|spoon sets|cans of cat food|cat|flower basket|fruit platter|"
        "grapefruit|kiwi|hand blender|knobs|vessels|cell phone charger|wire basket|tub of tupperware|"
        "candelabra|litter box|shovel|cat bed|door way|belt|surge protect|glass|console controller|shoe rack|"
        "door frame|computer disk|briefcase|mail tray|file pad|letter stand|plastic cup of coffee|glass box|"
        "ping pong ball|ping pong racket|ping pong table|tennis racket|ping pong racquet|xbox|"
        "electric toothbrush base|toilet brush|toiletries|razor|bottle of contact lens solution|"
        "contact lens case|cream|glass container|container of skin cream|soap dish|scale|soap stand|cactus|"
        "door  window  reflection|ceramic frog|incense candle|storage space|door lock|toilet paper holder|"
        "tissue|personal care liquid|shower head|shower knob|knob|cream tube|perfume box|perfume|"
        "back scrubber|door facing trimreflection|doorreflection|light switchreflection|medicine tube|wallet|"
        "soap tray|door curtain|shower pipe|face wash cream|flashlight|shower base|window shelf|shower hose|"
        "toothpaste holder|soap box|incense holder|conch shell|roll of toilet paper|shower tube|"
        "bottle of listerine|bottle of hand wash liquid|tea pot|lazy susan|avocado|fruit stand|fruitplate|"
        "oil container|package of water|bottle of liquid|door way arch|jug|bulb|bagel|bag of bagels|"
        "banana peel|bag of oreo|flask|collander|brick|torch|dog bowl|wooden plank|eggs|grill|dog|chimney|"
        "dog cage|orange plastic cap|glass set|vessel set|mellon|aluminium foil|orange|peach|tea coaster|"
        "butterfly sculpture|corkscrew|heating tray|food processor|corn|squash|watermellon|vegetables|celery|"
        "glass dish|hot dogs|plastic dish|vegetable|sticker|chapstick|sifter|fruit basket|glove|"
        "measuring cup|water filter|wine accessory|dishes|file box|ornamental pot|dog toy|salt and pepper|"
        "electrical kettle|kitchen container plastic|pineapple|suger jar|steamer|charger|mug holder|"
        "orange juicer|juicer|bag of hot dog buns|hamburger bun|mug hanger|bottle of ketchup|toy kitchen|"
        "food wrapped on a tray|kitchen utensils|oven mitt|bottle of comet|wooden utensil|decorative dish|"
        "handle|label|flask set|cooking pot cover|tupperware|garlic|tissue roll|lemon|wine|decorative bottle|"
        "wire tray|tea cannister|clothing hamper|guitar case|wardrobe|boomerang|button|karate belts|medal|"
        "window seat|window box|necklace holder|beeper|webcam|fish tank|luggage|life jacket|shoelace|pen cup|"
        "eyeball plastic ball|toy pyramid|model boat|certificate|puppy toy|wire board|quill|canister|"
        "toy boat|antenna|bean bag|lint comb|travel bag|wall divider|toy chest|headband|luggage rack|"
        "bunk bed|lego|yarmulka|package of bedroom sheets|bedding package|comb|dollar bill|pig|storage bin|"
        "storage chest|slide|playpen|electronic drumset|ipod dock|microphone|music keyboard|music stand|"
        "microphone stand|album|kinect|inkwell|baseball|decorative bowl|book holder|toy horse|desser|"
        "toy apple|toy dog|scenary|drawer knob|shoe hanger|tent|figurine|soccer ball|hand weight|magic 8ball|"
        "bottle of perfume|sleeping bag|decoration item|envelopes|trinket|hand fan|"
        "sculpture of the chrysler building|sculpture of the eiffel tower|"
        "sculpture of the empire state building|jeans|garage door|case|rags|decorative item|toy stroller|"
        "shelf frame|cat house|can of beer|dog bed|lamp shade|bracelet|reflection of window shutters|"
        "decorative egg|indoor fountain|photo album|decorative candle|walkietalkie|serving dish|floor trim|"
        "mini display platform|american flag|vhs tapes|throw|newspapers|mantle|package of bottled water|"
        "serving platter|display platter|centerpiece|tea box|gold piece|wreathe|lectern|hammer|matchbox|"
        "pepper|yellow pepper|duck|eggplant|glass ware|sewing machine|rolled up rug|doily|coffee pot|torah"
    ).split("|")
)
# SUN RGB-D's 37 classes: the first 37 of NYU's 40 (ankurhanda/sunrgbd-meta-data)
SUN37_OBJECT_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag",
)
KNOWN_OBJECT_NAMES: frozenset[str] = frozenset(
    normalize_object_name(name)
    for name in (
        *NYU894_OBJECT_NAMES,
        *SUN37_OBJECT_NAMES,
        *OBJECT_VOCABULARY,
        *OBJECT_SYNONYMS,
        *OBJECT_SYNONYMS.values(),
        *(name for group in CONFUSABLE_GROUPS for name in group),
        *STRUCTURAL_NAMES,
    )
) - {""}


def is_known_object_name(raw: str) -> bool:
    """True when `raw` (any spelling) names a class of NYU / SUN RGB-D or of the project's vocabulary."""
    return normalize_object_name(raw) in KNOWN_OBJECT_NAMES


def known_scene_label(raw: str, scene_types: tuple[str, ...]) -> str | None:
    """The normalised scene label of `raw` when it is one of `scene_types` (any spelling), else None."""
    name = normalize_scene_name(raw)
    return name if name in {normalize_scene_name(t) for t in scene_types} else None
