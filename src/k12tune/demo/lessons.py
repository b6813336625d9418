"""The demo's teaching content, written for this project: maths, Chinese, science and English
from grade 1 to grade 12, each lesson a question, a worked answer (what a good teacher says) and a
weak answer (a bare result, a wrong one, or a brush-off: what preference training should
disprefer). Maths lessons are computed from their parameters, so every answer is right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Lesson:
    subject: str  # 数学, 语文, 科学, 物理, 化学, 生物, 英语
    grade: int  # 1..12 (1-6 primary, 7-9 junior, 10-12 senior high)
    question: str
    answer: str  # worked: steps, reasons, a check
    weak: str  # the dispreferred answer

    @property
    def system(self) -> str:
        return f"你是一位耐心的{grade_name(self.grade)}{self.subject}老师，讲解要清楚、分步骤。"


def grade_name(grade: int) -> str:
    numerals = "一二三四五六"
    if grade <= 6:
        return f"小学{numerals[grade - 1]}年级"
    if grade <= 9:
        return f"初中{numerals[grade - 7]}年级"
    return f"高中{numerals[grade - 10]}年级"


NAMES = ["小明", "小红", "小刚", "小丽", "小华"]
ITEMS = [("苹果", "个"), ("铅笔", "支"), ("故事书", "本"), ("贴纸", "张")]


def word_problems() -> list[Lesson]:
    """Grades 1-3: addition, subtraction and multiplication word problems; the weak answer is
    the bare number."""
    lessons = []
    for i in range(60):
        name = NAMES[i % len(NAMES)]
        item, unit = ITEMS[i % len(ITEMS)]
        a, b = 12 + 7 * i % 50, 3 + 5 * i % 17
        kind = i % 3
        if kind == 0:
            q = f"{name}有{a}{unit}{item}，妈妈又给了他{b}{unit}，现在一共有多少{unit}？"
            steps = (
                f"把原有的和新得到的合起来，用加法：{a} + {b} = {a + b}。答：现在一共有{a + b}{unit}{item}。"
            )
            result = a + b
        elif kind == 1:
            q = f"{name}有{a + b}{unit}{item}，送给同学{b}{unit}，还剩多少{unit}？"
            steps = f"从总数里去掉送出的部分，用减法：{a + b} - {b} = {a}。答：还剩{a}{unit}{item}。"
            result = a
        else:
            x, y = 2 + i % 8, 3 + i % 6
            q = f"每盒有{x}{unit}{item}，{name}买了{y}盒，一共有多少{unit}？"
            steps = f"求{y}个{x}是多少，用乘法：{x} × {y} = {x * y}。答：一共有{x * y}{unit}{item}。"
            result = x * y
        lessons.append(Lesson("数学", 1 + kind, q, steps, f"答案是{result}{unit}。自己想想吧。"))
    return lessons


def rectangles() -> list[Lesson]:
    """Grade 3: perimeter and area of a rectangle; the weak answer mixes the two formulas up."""
    lessons = []
    for i in range(12):
        length, width = 5 + i, 2 + i % 5
        q = f"一个长方形长{length}厘米，宽{width}厘米，它的周长和面积各是多少？"
        a = (
            f"周长是四条边的和：({length} + {width}) × 2 = {2 * (length + width)}（厘米）；"
            f"面积是长乘宽：{length} × {width} = {length * width}（平方厘米）。"
            "注意周长的单位是厘米，面积的单位是平方厘米。"
        )
        weak = f"周长是{length * width}厘米，面积是{2 * (length + width)}平方厘米。"
        lessons.append(Lesson("数学", 3, q, a, weak))
    return lessons


def fractions() -> list[Lesson]:
    """Grade 5: adding fractions with different denominators; the weak answer adds the
    numerators and the denominators, the classic mistake."""
    lessons = []
    pairs = [(1, 2, 1, 3), (1, 4, 1, 6), (2, 3, 1, 4), (3, 5, 1, 2), (1, 6, 2, 9), (3, 4, 1, 8)]
    pairs += [(2, 5, 1, 3), (1, 8, 5, 12), (5, 6, 1, 4), (1, 3, 2, 7), (3, 10, 1, 4), (4, 9, 1, 6)]
    for a, b, c, d in pairs:
        total = Fraction(a, b) + Fraction(c, d)
        common = math.lcm(b, d)
        x, y = a * (common // b), c * (common // d)
        q = f"计算：{a}/{b} + {c}/{d} = ？"
        simplified = "" if total.denominator == common else f"，约分后是{total.numerator}/{total.denominator}"
        a_text = (
            f"分母不同，要先通分。{b}和{d}的最小公倍数是{common}，"
            f"所以{a}/{b} = {x}/{common}，{c}/{d} = {y}/{common}。"
            f"再把分子相加：{x}/{common} + {y}/{common} = {x + y}/{common}{simplified}。"
        )
        lessons.append(Lesson("数学", 5, q, a_text, f"{a}/{b} + {c}/{d} = {a + c}/{b + d}。"))
    return lessons


def equations() -> list[Lesson]:
    """Grade 7: one-step-at-a-time solutions of ax + b = c, checked by substitution."""
    lessons = []
    for i in range(12):
        a, x, b = 2 + i % 5, 3 + i, 1 + 2 * i
        c = a * x + b
        q = f"解方程：{a}x + {b} = {c}"
        steps = (
            f"两边同时减去{b}：{a}x = {c - b}；两边同时除以{a}：x = {x}。"
            f"检验：{a} × {x} + {b} = {c}，左边等于右边，所以x = {x}是方程的解。"
        )
        lessons.append(Lesson("数学", 7, q, steps, f"x = {x + 1}，直接写答案就行。"))
    return lessons


def right_triangles() -> list[Lesson]:
    """Grade 8: the hypotenuse by the Pythagorean theorem."""
    lessons = []
    for i, (p, q, r) in enumerate(
        [(3, 4, 5), (5, 12, 13), (20, 21, 29), (8, 15, 17), (7, 24, 25), (9, 40, 41)]
    ):
        for scale in (1, 2):
            a, b, c = p * scale, q * scale, r * scale
            question = f"直角三角形的两条直角边分别是{a}和{b}，斜边是多少？"
            steps = (
                f"根据勾股定理，斜边的平方等于两条直角边的平方和：{a}² + {b}² = {a * a} + {b * b} = {c * c}，"
                f"所以斜边 = √{c * c} = {c}。"
            )
            lessons.append(
                Lesson(
                    "数学",
                    8,
                    question,
                    steps,
                    f"斜边就是两条直角边相加，等于{a + b}。" if i % 2 else "这道题我不会做，跳过吧。",
                )
            )
    return lessons


def sequences() -> list[Lesson]:
    """Grade 11: the n-th term and the sum of an arithmetic sequence."""
    lessons = []
    for i in range(12):
        first, step, n = 1 + i, 2 + i % 4, 10 + i
        last = first + (n - 1) * step
        total = n * (first + last) // 2  # exact: n(a1 + an) = 2n·a1 + n(n - 1)d is even
        q = f"等差数列的首项是{first}，公差是{step}，求第{n}项和前{n}项的和。"
        a = (
            f"通项公式 aₙ = a₁ + (n - 1)d，所以第{n}项是 {first} + {n - 1} × {step} = {last}。"
            f"前n项和 Sₙ = n(a₁ + aₙ)/2 = {n} × ({first} + {last}) / 2 = {total}。"
        )
        lessons.append(Lesson("数学", 11, q, a, f"第{n}项是{first + n * step}，和是{total + step}。"))
    return lessons


IDIOMS = [
    ("画蛇添足", "画蛇时给蛇添上脚，比喻做了多余的事，反而不恰当。"),
    ("守株待兔", "比喻死守狭隘经验，不知变通，或妄想不劳而获。"),
    ("亡羊补牢", "羊丢了再去修补羊圈，比喻出了问题以后想办法补救，可以防止继续受损失。"),
    ("井底之蛙", "井底的青蛙只能看到井口那么大的天，比喻见识狭窄的人。"),
    ("对牛弹琴", "比喻对不懂道理的人讲道理，或说话写文章不看对象。"),
    ("拔苗助长", "把苗拔起来帮助它生长，比喻违反事物发展的规律，急于求成，反而坏事。"),
    ("自相矛盾", "比喻自己的言行前后抵触，不能自圆其说。"),
    ("掩耳盗铃", "捂住耳朵去偷铃铛，比喻自己欺骗自己，明明掩盖不住的事偏要设法掩盖。"),
    ("刻舟求剑", "比喻拘泥成例，不知道跟着情势的变化而改变看法或办法。"),
    ("杯弓蛇影", "把映在酒杯里的弓影当成蛇，比喻因疑神疑鬼而引起恐惧。"),
    ("纸上谈兵", "在纸面上谈论打仗，比喻空谈理论，不能解决实际问题。"),
    ("胸有成竹", "画竹子前心里已有竹子的形象，比喻做事之前已经有了通盘的考虑。"),
]

# (first line, next line, title, poet)
POEMS = [
    ("床前明月光", "疑是地上霜", "静夜思", "李白"),
    ("春眠不觉晓", "处处闻啼鸟", "春晓", "孟浩然"),
    ("白日依山尽", "黄河入海流", "登鹳雀楼", "王之涣"),
    ("鹅鹅鹅", "曲项向天歌", "咏鹅", "骆宾王"),
    ("锄禾日当午", "汗滴禾下土", "悯农", "李绅"),
    ("千山鸟飞绝", "万径人踪灭", "江雪", "柳宗元"),
    ("日照香炉生紫烟", "遥看瀑布挂前川", "望庐山瀑布", "李白"),
    ("慈母手中线", "游子身上衣", "游子吟", "孟郊"),
    ("李白乘舟将欲行", "忽闻岸上踏歌声", "赠汪伦", "李白"),
    ("两个黄鹂鸣翠柳", "一行白鹭上青天", "绝句", "杜甫"),
    ("故人西辞黄鹤楼", "烟花三月下扬州", "黄鹤楼送孟浩然之广陵", "李白"),
    ("离离原上草", "一岁一枯荣", "赋得古原草送别", "白居易"),
]

# (term, example sentence, what it does)
RHETORIC = [
    ("比喻", "弯弯的月亮像一条小船。", "把月亮比作小船，写出了月亮弯弯的形状"),
    ("拟人", "小草从地下探出头来。", "把小草当作人来写，写出了小草破土而出的生机"),
    ("夸张", "飞流直下三千尺。", "故意把瀑布的长度说大，突出瀑布的雄伟气势"),
    ("排比", "我们爱祖国的山，爱祖国的水，爱祖国的人。", "用三个结构相同的短语，加强语气，表达强烈的感情"),
    ("设问", "什么是幸福？幸福就是努力之后的收获。", "先提问再回答，引起读者的注意和思考"),
    ("反问", "难道我们能眼看着小树被折断吗？", "用问句表达肯定的意思，语气更强烈"),
]


def chinese() -> list[Lesson]:
    """Idioms (grade 4), poems (grades 1-6), figures of speech (grade 7)."""
    lessons = [
        Lesson(
            "语文",
            4,
            f"解释成语“{word}”的意思，并造一个句子。",
            f"“{word}”的意思是：{meaning}例句：做事要踏实，不能{word}。"
            if word in {"守株待兔", "拔苗助长", "掩耳盗铃", "刻舟求剑", "纸上谈兵"}
            else f"“{word}”的意思是：{meaning}造句时要注意它的比喻义，不要只按字面理解。",
            "就是字面上的意思，不用解释。",
        )
        for word, meaning in IDIOMS
    ]
    for i, (first, second, title, poet) in enumerate(POEMS):
        lessons.append(
            Lesson(
                "语文",
                1 + i % 6,
                f"“{first}”的下一句是什么？这首诗是谁写的？",
                f"下一句是“{second}”。这两句出自唐代诗人{poet}的《{title}》。背诵时可以先理解诗意，再连起来读。",
                f"下一句是“{POEMS[(i + 1) % len(POEMS)][1]}”，作者是杜牧。",
            )
        )
    for term, sentence, effect in RHETORIC:
        lessons.append(
            Lesson(
                "语文",
                7,
                f"“{sentence}”这句话用了什么修辞手法？有什么作用？",
                f"这句话用了{term}的修辞手法，{effect}。",
                "这句话用了修辞手法，写得很好。",
            )
        )
    return lessons


FACTS = [
    (
        "植物为什么需要阳光？",
        "植物通过光合作用，利用阳光的能量把二氧化碳和水变成有机物，并放出氧气。没有阳光，光合作用就无法进行。",
        3,
    ),
    (
        "水在多少摄氏度时沸腾？",
        "在一个标准大气压下，水在100摄氏度时沸腾；气压降低时，沸点也会降低，比如在高山上水不到100摄氏度就沸腾了。",
        4,
    ),
    (
        "为什么会有白天和黑夜？",
        "地球不停地自转，面向太阳的一面是白天，背向太阳的一面是黑夜，所以白天和黑夜交替出现。",
        5,
    ),
    (
        "声音是怎样产生的？",
        "声音是由物体振动产生的。振动停止，发声也就停止；声音需要空气、水或固体等介质才能传播。",
        4,
    ),
    ("月亮自己会发光吗？", "月亮自己不发光，我们看到的月光是月球反射的太阳光。", 3),
    (
        "什么是食物链？请举一个例子。",
        "生态系统中，生物之间由于吃与被吃的关系形成的链条叫食物链，例如：草→兔子→狐狸。",
        5,
    ),
    (
        "铁为什么会生锈？",
        "铁和空气中的氧气、水分发生化学反应，生成疏松的铁锈。保持干燥或刷油漆可以防止生锈。",
        6,
    ),
    ("为什么夏天穿浅色衣服更凉快？", "浅色衣服反射的阳光多、吸收的热量少，所以夏天穿浅色衣服更凉快。", 4),
    (
        "影子是怎样形成的？",
        "光在同种均匀介质中沿直线传播，遇到不透明的物体被挡住，物体后面光照不到的地方就形成了影子。",
        3,
    ),
    (
        "为什么冬天窗户玻璃上会结冰花？",
        "室内温暖的水蒸气遇到冰冷的玻璃，直接凝华成小冰晶，就形成了冰花，所以冰花结在玻璃的内侧。",
        5,
    ),
]

# (substance, formula)
FORMULAS = [
    ("水", "H₂O"), ("二氧化碳", "CO₂"), ("氧气", "O₂"), ("氯化钠（食盐）", "NaCl"),
    ("甲烷", "CH₄"), ("氢氧化钠", "NaOH"), ("硫酸", "H₂SO₄"), ("碳酸钙", "CaCO₃"),
]  # fmt: skip

ORGANELLES = [
    ("细胞膜", "控制物质进出细胞"),
    ("细胞核", "含有遗传物质，是细胞的控制中心"),
    ("叶绿体", "进行光合作用的场所，只存在于植物的绿色部分"),
    ("线粒体", "进行呼吸作用、为细胞提供能量"),
    ("细胞壁", "支持和保护植物细胞"),
    ("液泡", "储存细胞液，里面溶解着糖分等物质"),
]


def science() -> list[Lesson]:
    """Primary science facts, junior physics (density, speed), chemistry formulas, biology."""
    lessons = [Lesson("科学", grade, q, a, "不知道，你去查书吧。") for q, a, grade in FACTS]
    for i in range(8):
        mass, volume = 54 * (i + 1), 20 * (i + 1)
        lessons.append(
            Lesson(
                "物理",
                8,
                f"一块金属的质量是{mass}克，体积是{volume}立方厘米，它的密度是多少？",
                f"密度等于质量除以体积：ρ = m/V = {mass}克 ÷ {volume}立方厘米 = 2.7克/立方厘米，"
                "和铝的密度相同，所以它可能是铝。",
                f"密度是{mass * volume}。",
            )
        )
    for i in range(8):
        distance, time = 120 * (i + 1), 2 * (i + 1) + (i % 2)
        speed = Fraction(distance, time)
        shown = f"= {speed.numerator}" if speed.denominator == 1 else f"≈ {float(speed):.1f}"
        lessons.append(
            Lesson(
                "物理",
                8,
                f"一辆汽车{time}小时行驶了{distance}千米，它的平均速度是多少？",
                f"平均速度等于路程除以时间：v = s/t = {distance}千米 ÷ {time}小时 {shown}千米/时。",
                f"速度是{distance * time}千米/时。",
            )
        )
    for name, formula in FORMULAS:
        lessons.append(
            Lesson(
                "化学",
                9,
                f"{name}的化学式怎么写？",
                f"{name}的化学式是{formula}。写化学式时，元素符号右下角的小数字表示一个分子（或一个单位）中该原子的个数。",
                "这个化学式我记不清了。",
            )
        )
    for part, role in ORGANELLES:
        lessons.append(
            Lesson(
                "生物",
                7,
                f"细胞中的{part}有什么作用？",
                f"{part}的作用是：{role}。",
                "它没有什么特别的作用。",
            )
        )
    return lessons


# (word, meaning, example, grade)
WORDS = [
    ("apple", "苹果", "I eat an apple every day.", 3),
    ("library", "图书馆", "We read books in the library.", 4),
    ("weather", "天气", "The weather is sunny today.", 4),
    ("teacher", "老师", "Our teacher is very kind.", 3),
    ("homework", "家庭作业", "I finish my homework after dinner.", 5),
    ("science", "科学", "Science helps us understand the world.", 6),
    ("birthday", "生日", "Happy birthday to you!", 3),
    ("museum", "博物馆", "We visited the museum last Sunday.", 6),
    ("healthy", "健康的", "Vegetables keep us healthy.", 7),
    ("environment", "环境", "We should protect the environment.", 8),
    ("invention", "发明", "The telephone is a great invention.", 9),
    ("volunteer", "志愿者", "She works as a volunteer at the hospital.", 10),
]

# (verb, past tense, example)
IRREGULAR = [
    ("go", "went", "I went to school by bus yesterday."),
    ("eat", "ate", "We ate dumplings last night."),
    ("see", "saw", "I saw a rainbow after the rain."),
    ("buy", "bought", "Mom bought me a new bag."),
    ("write", "wrote", "He wrote a letter to his friend."),
    ("swim", "swam", "They swam in the lake last summer."),
    ("teach", "taught", "Mr. Li taught us a new song."),
    ("take", "took", "She took many photos in Beijing."),
]


def english() -> list[Lesson]:
    """Vocabulary (grades 3-10) and irregular past tenses (grade 7), explained in Chinese."""
    lessons = [
        Lesson(
            "英语",
            grade,
            f"英语单词“{word}”是什么意思？怎么用？",
            f"“{word}”的意思是“{meaning}”。例句：{example}",
            f"“{word}”的意思是“{WORDS[(i + 1) % len(WORDS)][1]}”。",
        )
        for i, (word, meaning, example, grade) in enumerate(WORDS)
    ]
    for verb, past, example in IRREGULAR:
        lessons.append(
            Lesson(
                "英语",
                7,
                f"动词{verb}的过去式是什么？",
                f"{verb}是不规则动词，过去式是{past}，不能直接加-ed。例句：{example}",
                f"{verb}的过去式是{verb}ed。",
            )
        )
    return lessons


def english_lessons() -> list[Lesson]:
    """The same vocabulary and verbs taught in English, for the English sources."""
    lessons = [
        Lesson(
            "英语",
            grade,
            f"What does the word '{word}' mean? Give an example.",
            f"'{word}' means {meaning} in Chinese. Example: {example}",
            "It is a word.",
        )
        for word, meaning, example, grade in WORDS
    ]
    lessons += [
        Lesson(
            "英语",
            7,
            f"What is the past tense of '{verb}'?",
            f"'{verb}' is irregular: its past tense is '{past}', not '{verb}ed'. Example: {example}",
            f"The past tense is '{verb}ed'.",
        )
        for verb, past, example in IRREGULAR
    ]
    return lessons
