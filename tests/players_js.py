"""HLS and DASH played by the JavaScript players apps use (hls.js, shaka-player, dash.js, pinned in
package.json and installed from the npm registry), in Debian's headless Chromium.

`play(page, player, url)` loads the player into the page (which must be on the media's own origin, so
that no CORS is in the way), plays the presentation from its start to its end at twice the speed,
then seeks to 80% and plays on. What it reports comes from the players and from Chromium's media
stack, not from our code: the duration, the tracks the player found, the codecs it buffered, whether
a video frame was ever decoded (`videoWidth`), every fatal error, where the seek landed."""

from __future__ import annotations

from pathlib import Path

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
SCRIPTS = {
    "hls.js": NODE_MODULES / "hls.js" / "dist" / "hls.min.js",
    "shaka": NODE_MODULES / "shaka-player" / "dist" / "shaka-player.compiled.js",
    "dash.js": NODE_MODULES / "dashjs" / "dist" / "modern" / "umd" / "dash.all.min.js",
}

# Each player's set-up: attach to the element `v`, load `url`, push fatal errors into out.errors, and
# return a function that reports the tracks the player knows.
ATTACH = {
    "hls.js": """
      const hls = new Hls({enableWorker: false});
      hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) out.errors.push(`${d.type}: ${d.details}`); });
      hls.on(Hls.Events.BUFFER_CODECS, (e, d) => { out.buffered_kinds = Object.keys(d).sort(); });
      hls.loadSource(url);
      hls.attachMedia(v);
      window.__player = hls;
      const tracks = () => ({
        levels: hls.levels.map(l => ({audio: l.audioCodec || null, video: l.videoCodec || null,
                                      width: l.width || 0, bitrate: l.bitrate})),
        audio_tracks: hls.audioTracks.length});
    """,
    "shaka": """
      shaka.polyfill.installAll();
      const player = new shaka.Player();
      await player.attach(v);
      player.addEventListener('error', (e) => out.errors.push(`shaka ${e.detail.code}`));
      window.__player = player;
      try { await player.load(url); } catch (e) { out.errors.push(`shaka load ${e.code}`); }
      const tracks = () => ({
        levels: player.getVariantTracks().map(t => ({audio: t.audioCodec || null, video: t.videoCodec || null,
                                                      width: t.width || 0, bitrate: t.bandwidth})),
        audio_tracks: player.getAudioTracks ? player.getAudioTracks().length : null});
    """,
    "dash.js": """
      const player = dashjs.MediaPlayer().create();
      player.updateSettings({debug: {logLevel: dashjs.Debug.LOG_LEVEL_NONE}});
      player.on(dashjs.MediaPlayer.events.ERROR, (e) => out.errors.push(`dash.js ${JSON.stringify(e.error)}`));
      player.initialize(v, url, false);
      window.__player = player;
      const tracks = () => ({
        levels: ['audio', 'video'].flatMap(kind => player.getTracksFor(kind).map(t => ({
          audio: kind === 'audio' ? t.codec : null, video: kind === 'video' ? t.codec : null,
          width: 0, bitrate: null}))),
        audio_tracks: player.getTracksFor('audio').length});
    """,
}

# The start of every run: a muted video element, a wait for its events, the player attached, its metadata.
SETUP = """  const out = {errors: [], buffered_kinds: null};
  const v = document.createElement('video');
  v.muted = true;
  document.body.appendChild(v);
  v.addEventListener('error', () => out.errors.push(`media element: ${v.error && v.error.message}`));
  const wait = (event, ms) => new Promise(ok => {
    const timer = setTimeout(() => ok(false), ms);
    v.addEventListener(event, () => { clearTimeout(timer); ok(true); }, {once: true});
  });
  const loaded = wait('loadedmetadata', timeout);
  %ATTACH%
  out.loaded = await loaded;
  if (!out.loaded) { out.errors.push('no metadata'); return out; }
"""

PLAY = """async ([url, timeout]) => {
%SETUP%  out.duration = v.duration;
  v.playbackRate = 2;
  const ended = wait('ended', timeout);
  try { await v.play(); } catch (e) { out.errors.push(`play: ${e}`); }
  out.ended = await ended;
  out.at_end = v.currentTime;
  out.video_width = v.videoWidth;
  out.decoded_video_frames = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : null;
  Object.assign(out, tracks());
  const target = out.duration * 0.8;
  const seeked = wait('seeked', timeout);
  v.currentTime = target;
  out.seeked = await seeked;
  out.landed = v.currentTime;
  out.seek_target = target;
  try { await v.play(); } catch (e) { out.errors.push(`play after seek: ${e}`); }
  await new Promise(ok => setTimeout(ok, 600));
  out.after_seek = v.currentTime;
  return out;
}"""


def play(page, player: str, url: str, timeout_ms: int = 30000) -> dict:
    """Play `url` with `player` ('hls.js', 'shaka' or 'dash.js') in `page`, which is already on the
    media's origin; returns what the player and the media element reported."""
    page.add_script_tag(path=str(SCRIPTS[player]))
    return page.evaluate(PLAY.replace("%SETUP%", SETUP).replace("%ATTACH%", ATTACH[player]), [url, timeout_ms])


PLAY_LIVE = """async ([url, timeout]) => {
%SETUP%  const ended = wait('ended', timeout);
  try { await v.play(); } catch (e) { out.errors.push(`play: ${e}`); }
  out.ended = await ended;
  out.at_end = v.currentTime;
  out.duration = v.duration;
  out.video_width = v.videoWidth;
  out.decoded_video_frames = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : null;
  Object.assign(out, tracks());
  return out;
}"""


def play_live(page, player: str, url: str, timeout_ms: int = 30000) -> dict:
    """Play a live `url` from where the player joins it until the playlist ends (ENDLIST) and the
    element's `ended`: no seek (a live window has no fixed duration to seek in)."""
    page.add_script_tag(path=str(SCRIPTS[player]))
    return page.evaluate(PLAY_LIVE.replace("%SETUP%", SETUP).replace("%ATTACH%", ATTACH[player]), [url, timeout_ms])
