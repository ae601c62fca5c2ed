"""Natural-language text queries for the demo library: described by use, place, shape or paraphrase.

An evaluation set only: no training code reads this module (tests/test_natural_queries.py checks).

The attribute queries ("a red chair", "一把红色的椅子") name the category noun and share the
captions' wording, so a lexical or caption-memorising model can score well on them. These queries
never name their own category (neither the English nor the Chinese noun, nor a near-synonym that is
just the noun), never mention another category's noun, share no phrasing with the generator's
caption templates or feature words, and carry no colour or material: relevance is by category only.

Each entry is (language, text, relevant categories). A query lists every demo category it honestly
describes, so a few broad ones list several (somewhere to sit: chair, sofa, bench, stool).
The English and Chinese sets are written separately, from different angles, not translated.
"""

from __future__ import annotations

NATURAL_QUERIES: list[tuple[str, str, tuple[str, ...]]] = [
    # ---------------------------------------------------------------- English
    # chair
    ("en", "a seat for one person", ("chair", "stool")),
    ("en", "what you sit on while working at your desk", ("chair",)),
    ("en", "office seat you can recline in", ("chair",)),
    # table
    ("en", "flat surface to eat meals at", ("table",)),
    ("en", "piece of furniture to work or write on", ("table",)),
    # lamp
    ("en", "something that brightens a dark room", ("lamp",)),
    ("en", "plug-in fixture that lights up a corner", ("lamp",)),
    # mug
    ("en", "something to drink hot coffee from", ("mug", "cup")),
    ("en", "drinkware you hook a finger through", ("mug",)),
    # vase
    ("en", "something to put flowers in", ("vase",)),
    ("en", "mantelpiece ornament that holds cut stems", ("vase",)),
    # car
    ("en", "what you drive to work every day", ("car",)),
    ("en", "family vehicle parked in the garage", ("car",)),
    # tree
    ("en", "plant with a woody trunk and branches", ("tree",)),
    ("en", "gives shade in a park on hot days", ("tree",)),
    ("en", "what birds build nests in", ("tree",)),
    # house
    ("en", "a place where a family lives", ("house",)),
    ("en", "building you buy with a mortgage", ("house",)),
    ("en", "where you live, with a front door and porch", ("house",)),
    # rocket
    ("en", "launches satellites into orbit", ("rocket",)),
    ("en", "what astronauts ride into space", ("rocket",)),
    ("en", "spacecraft blasting off from a launch pad", ("rocket",)),
    # bottle
    ("en", "something to carry water on a hike", ("bottle",)),
    ("en", "what wine is sold in", ("bottle",)),
    ("en", "container with a screw top for liquids", ("bottle",)),
    # sofa
    ("en", "where you lounge while watching tv", ("sofa",)),
    ("en", "padded living room seating for several people", ("sofa",)),
    # bed
    ("en", "where you sleep at night", ("bed",)),
    ("en", "furniture with a mattress", ("bed",)),
    # boat
    ("en", "something to cross a lake in", ("boat",)),
    ("en", "vessel for a fishing trip at sea", ("boat",)),
    ("en", "what gets moored at a marina", ("boat",)),
    # airplane
    ("en", "flies passengers between cities", ("airplane",)),
    ("en", "what takes off from an airport runway", ("airplane",)),
    # bench
    ("en", "long seat at a bus stop", ("bench",)),
    ("en", "where strangers sit side by side outdoors", ("bench",)),
    # stool
    ("en", "backless seat at a kitchen counter", ("stool",)),
    ("en", "what you perch on at a pub", ("stool",)),
    ("en", "what a farmer sits on while milking cows", ("stool",)),
    # bookshelf
    ("en", "where you keep your novels", ("bookshelf",)),
    ("en", "furniture for storing a book collection", ("bookshelf",)),
    ("en", "library furniture lined with paperbacks", ("bookshelf",)),
    # snowman
    ("en", "something kids build out of snow in winter", ("snowman",)),
    ("en", "figure with coal eyes and stick arms", ("snowman",)),
    # mushroom
    ("en", "grows on damp logs in the woods", ("mushroom",)),
    ("en", "something foragers pick in the woods", ("mushroom",)),
    ("en", "pizza topping that grows in the dark", ("mushroom",)),
    # tower
    ("en", "where a princess is locked up in fairy tales", ("tower",)),
    ("en", "narrow building you climb for the view", ("tower",)),
    ("en", "where the bells hang above a church", ("tower",)),
    # bowl
    ("en", "something to eat cereal or soup from", ("bowl",)),
    ("en", "what rice is served in", ("bowl",)),
    ("en", "kitchenware for mixing batter", ("bowl",)),
    # cup
    ("en", "something to sip tea from", ("cup", "mug")),
    ("en", "paper thing from the water cooler", ("cup",)),
    ("en", "small drinkware for espresso", ("cup",)),
    # robot
    ("en", "machine that walks and talks the way humans do", ("robot",)),
    ("en", "mechanical helper from science fiction", ("robot",)),
    ("en", "battery-powered helper that beeps and follows orders", ("robot",)),
    # fence
    ("en", "keeps the dog in the yard", ("fence",)),
    ("en", "boundary around a garden", ("fence",)),
    ("en", "row of pickets along a property line", ("fence",)),
    # broad phrasings that honestly fit several categories
    ("en", "somewhere to sit", ("chair", "sofa", "bench", "stool")),
    ("en", "seating for more than one person", ("sofa", "bench")),
    ("en", "something to drink from", ("mug", "cup", "bottle")),
    ("en", "vehicles that leave the ground", ("airplane", "rocket")),
    # ---------------------------------------------------------------- Chinese
    # chair
    ("zh", "一个人坐还能往后靠的", ("chair",)),
    ("zh", "办公室里能转的座位", ("chair",)),
    ("zh", "会议室里一排排的座位", ("chair",)),
    # table
    ("zh", "一家人围着吃饭的家具", ("table",)),
    ("zh", "开会时大家围坐的", ("table",)),
    ("zh", "打麻将用的家具", ("table",)),
    # lamp
    ("zh", "学生写作业护眼用的", ("lamp",)),
    ("zh", "晚上照明用的家用电器", ("lamp",)),
    # mug
    ("zh", "办公室里泡咖啡用的", ("mug", "cup")),
    ("zh", "带耳朵的厚陶瓷喝水用具", ("mug",)),
    ("zh", "早餐倒热牛奶喝的", ("mug", "cup")),
    # vase
    ("zh", "摆在客厅里插花的瓷器", ("vase",)),
    ("zh", "情人节收到玫瑰后要用的", ("vase",)),
    # car
    ("zh", "考了驾照才能开的", ("car",)),
    ("zh", "加油站里排队加油的", ("car",)),
    # tree
    ("zh", "秋天会落叶的植物", ("tree",)),
    ("zh", "森林里长得最高的植物", ("tree",)),
    ("zh", "砍下来能做木材的", ("tree",)),
    # house
    ("zh", "乡下带院子的住处", ("house",)),
    ("zh", "盖在郊外的独栋小楼", ("house",)),
    # rocket
    ("zh", "酒泉卫星发射中心升空的", ("rocket",)),
    ("zh", "尾部喷火冲上天的", ("rocket",)),
    ("zh", "冲出大气层的运载工具", ("rocket",)),
    # bottle
    ("zh", "拧开就能喝的饮料容器", ("bottle",)),
    ("zh", "厨房里装酱油醋的", ("bottle",)),
    # sofa
    ("zh", "家里来客人时坐的软座", ("sofa",)),
    ("zh", "窝着刷手机的布艺家具", ("sofa",)),
    # bed
    ("zh", "铺着褥子和被子的", ("bed",)),
    ("zh", "早上赖着不想起的地方", ("bed",)),
    # boat
    ("zh", "端午节比赛划的", ("boat",)),
    ("zh", "渡人过河的水上交通工具", ("boat",)),
    # airplane
    ("zh", "出国旅游坐的航班", ("airplane",)),
    ("zh", "有空姐送餐的交通工具", ("airplane",)),
    # bench
    ("zh", "公园里供路人歇脚的", ("bench",)),
    ("zh", "球场边替补队员坐的", ("bench",)),
    # stool
    ("zh", "坐着择菜的小矮座", ("stool",)),
    ("zh", "钓鱼时带的折叠小座", ("stool",)),
    # bookshelf
    ("zh", "书房靠墙放藏书的", ("bookshelf",)),
    ("zh", "放书和摆件的格子柜", ("bookshelf",)),
    # snowman
    ("zh", "用胡萝卜当鼻子的", ("snowman",)),
    ("zh", "出太阳就会化掉的", ("snowman",)),
    # mushroom
    ("zh", "雨后林子里冒出来的", ("mushroom",)),
    ("zh", "野外乱采可能会中毒的", ("mushroom",)),
    ("zh", "火锅里常涮的山珍", ("mushroom",)),
    # tower
    ("zh", "古代用来瞭望敌情的", ("tower",)),
    ("zh", "城堡角上的圆柱形高楼", ("tower",)),
    ("zh", "电视台发射信号的高耸建筑", ("tower",)),
    # bowl
    ("zh", "吃面条用的餐具", ("bowl",)),
    ("zh", "给小狗装狗粮的", ("bowl",)),
    # cup
    ("zh", "喝功夫茶的小巧器皿", ("cup",)),
    ("zh", "奶茶店装饮品的一次性容器", ("cup",)),
    # robot
    ("zh", "工厂流水线上自动焊接的", ("robot",)),
    ("zh", "陪小孩聊天的智能玩具", ("robot",)),
    ("zh", "按程序自动工作的智能助手", ("robot",)),
    # fence
    ("zh", "牧场上拦住牛羊的", ("fence",)),
    ("zh", "工地四周挡住行人的围挡", ("fence",)),
    # broad phrasings that honestly fit several categories
    ("zh", "可以坐的家具", ("chair", "sofa", "bench", "stool")),
    ("zh", "几个人能一起坐的", ("sofa", "bench")),
    ("zh", "用来装饮料的", ("mug", "cup", "bottle")),
    ("zh", "能在天上飞的东西", ("airplane", "rocket")),
    ("zh", "圣诞贺卡上常画的", ("snowman", "tree")),
]
