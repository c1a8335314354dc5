// The page's own words in English and Chinese. The language is the one last chosen (kept in
// localStorage), else the browser's first preference; switching reloads the page, whose
// state is all in the URL. Layer titles and records come from the platform as stored.

const WORDS = {
  en: {
    'title': 'City model',
    'map': 'City map',
    'layers': 'Layers',
    'record': 'Selected object',
    'home': 'Home',
    'home.tip': 'Back to the whole city (H)',
    'dimension.tip': 'Switch between a flat map and a pitched 3D view (D)',
    'language': '中文',
    'language.tip': '切换到中文',
    'loading': 'Loading…',
    'other': 'other',
    'by': 'by {what}',
    'zoom.hint': 'zoom in (from {zoom})',
    'close': 'Close (Esc)',
    'record.loading': 'Loading the record…',
    'record.finding': 'Finding the object at this place…',
    'record.none': 'Nothing found here: zoom in and click again.',
    'record.by.position': 'Found by position: zoom in for exact picking.',
    'history': 'History',
    'history.none': 'This layer keeps no versions.',
    'history.first': 'first version',
    'history.same': 'no change in these fields',
    'now': 'now',
    'reading.none': 'no reading yet',
    'buildings3d': '3D buildings (3D Tiles)',
    'error.map': 'Map data failed: {message}',
    'error.tile3d': 'A 3D tile failed ({url}): {message}',
    'error.catalog': 'The layer catalog could not be read: {message}',
    'error.request': '{description} (HTTP {status}: {url})',
    'error.failed': 'request failed',
    'flood': 'Flood scenario',
    'flood.key': 'API key',
    'flood.key.tip': 'An analyst’s or admin’s key; kept for this browser tab only',
    'flood.return': 'Return period (years)',
    'flood.duration': 'Duration (hours)',
    'flood.cell': 'Cell size (m)',
    'flood.every': 'Depth map every (minutes)',
    'flood.area': 'Area',
    'flood.area.view': 'the current view',
    'flood.area.box': 'a box I draw',
    'flood.area.draw': 'Drag on the map to draw the area…',
    'flood.area.drawn': 'Area: {w}, {s} – {e}, {n}',
    'flood.run': 'Run',
    'flood.queued': 'Queued…',
    'flood.running': 'Running: {progress} %',
    'flood.succeeded': 'Done: scenario {id}',
    'flood.failed': 'Scenario {id} failed: {error}',
    'flood.cancelled': 'Scenario {id} was cancelled',
    'flood.401': 'This needs an API key: type the key of an analyst or admin above.',
    'flood.403': 'This key may not run scenarios ({message}): use an analyst’s or admin’s key.',
    'flood.map': 'Depth map',
    'flood.time': 'Time',
    'flood.max': 'maximum',
    'flood.play': 'Play',
    'flood.pause': 'Pause',
    'flood.hotspots': 'Hotspots',
    'flood.hotspots.none': 'No hotspots.',
    'flood.hotspots.key': 'Hotspots and flooded buildings are internal: type a key to see them.',
    'flood.hotspot': '#{rank}: {people} people, {depth} m',
    'flood.roads': 'flooded roads',
    'flood.buildings': 'flooded buildings',
    'flood.clear': 'Clear',
    'flood.scenario': 'Scenario',
    'flood.maps.failed': 'Depth map tiles failed: {message}'
  },
  zh: {
    'title': '城市信息模型',
    'map': '城市地图',
    'layers': '图层',
    'record': '选中的对象',
    'home': '全城',
    'home.tip': '回到全城视图 (H)',
    'dimension.tip': '在平面地图和倾斜三维视图之间切换 (D)',
    'language': 'English',
    'language.tip': 'Switch to English',
    'loading': '加载中…',
    'other': '其他',
    'by': '按{what}',
    'zoom.hint': '放大后显示（{zoom} 级起）',
    'close': '关闭 (Esc)',
    'record.loading': '正在读取记录…',
    'record.finding': '正在按位置查找对象…',
    'record.none': '此处没有对象：请放大后再点击。',
    'record.by.position': '按位置找到：放大后可精确选取。',
    'history': '历史版本',
    'history.none': '此图层不保存版本。',
    'history.first': '第一个版本',
    'history.same': '这些字段没有变化',
    'now': '至今',
    'reading.none': '尚无读数',
    'buildings3d': '三维建筑（3D Tiles）',
    'error.map': '地图数据加载失败：{message}',
    'error.tile3d': '三维瓦片加载失败（{url}）：{message}',
    'error.catalog': '无法读取图层目录：{message}',
    'error.request': '{description}（HTTP {status}：{url}）',
    'error.failed': '请求失败',
    'flood': '内涝情景',
    'flood.key': 'API 密钥',
    'flood.key.tip': '分析员或管理员的密钥；只保存在当前标签页',
    'flood.return': '重现期（年）',
    'flood.duration': '历时（小时）',
    'flood.cell': '网格尺寸（米）',
    'flood.every': '水深图间隔（分钟）',
    'flood.area': '范围',
    'flood.area.view': '当前视图',
    'flood.area.box': '手绘矩形',
    'flood.area.draw': '在地图上拖动以绘制范围…',
    'flood.area.drawn': '范围：{w}, {s} – {e}, {n}',
    'flood.run': '运行',
    'flood.queued': '排队中…',
    'flood.running': '运行中：{progress} %',
    'flood.succeeded': '完成：情景 {id}',
    'flood.failed': '情景 {id} 失败：{error}',
    'flood.cancelled': '情景 {id} 已取消',
    'flood.401': '需要 API 密钥：请在上方输入分析员或管理员的密钥。',
    'flood.403': '此密钥无权运行情景（{message}）：请使用分析员或管理员的密钥。',
    'flood.map': '水深图',
    'flood.time': '时间',
    'flood.max': '最大值',
    'flood.play': '播放',
    'flood.pause': '暂停',
    'flood.hotspots': '积水热点',
    'flood.hotspots.none': '没有热点。',
    'flood.hotspots.key': '热点和受淹建筑为内部数据：请输入密钥查看。',
    'flood.hotspot': '第 {rank} 名：{people} 人，{depth} 米',
    'flood.roads': '受淹道路',
    'flood.buildings': '受淹建筑',
    'flood.clear': '清除',
    'flood.scenario': '情景',
    'flood.maps.failed': '水深图瓦片加载失败：{message}'
  }
};

const STORE = 'cim.language';

function initialLanguage() {
  const chosen = localStorage.getItem(STORE);
  if (chosen in WORDS) return chosen;
  const preferred = navigator.languages?.[0] || navigator.language || 'en';
  return preferred.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export const language = initialLanguage();

export function t(key, params = {}) {
  const template = WORDS[language][key] ?? WORDS.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

// Static words in the page: data-i18n (text), data-i18n-title, data-i18n-label (aria-label).
export function translatePage(root = document) {
  document.documentElement.lang = language === 'zh' ? 'zh-CN' : 'en';
  for (const element of root.querySelectorAll('[data-i18n]')) element.textContent = t(element.dataset.i18n);
  for (const element of root.querySelectorAll('[data-i18n-title]')) element.title = t(element.dataset.i18nTitle);
  for (const element of root.querySelectorAll('[data-i18n-label]')) {
    element.setAttribute('aria-label', t(element.dataset.i18nLabel));
  }
}

export function switchLanguage() {
  localStorage.setItem(STORE, language === 'zh' ? 'en' : 'zh');
  location.reload();
}
