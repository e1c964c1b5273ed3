//! What the configured upstream cannot make, refused before a task is made, with the limit named. Its
//! own room: the chat, task and video handlers all ask it, and it asks only the upstream.

use crate::api::state::AppState;
use crate::error::ApiError;

/// Refuses a resolution the upstream (with its configured model) does not make, naming the limit:
/// grok.com makes at most 720p; xAI's 1.5 makes 1080p for text- and image-to-video only (source:
/// docs.x.ai developers/model-capabilities/video/generation). `param` names the field.
pub fn check_resolution(state: &AppState, resolution: &str, references: bool, param: &str) -> Result<(), ApiError> {
    if resolution != "1080p" {
        return Ok(());
    }
    let caps = state.runner.upstream().caps();
    let (best, why) = match references {
        false => (caps.max_video_resolution, ""),
        true => (caps.max_reference_video_resolution, " from reference images"),
    };
    if best == "1080p" {
        return Ok(());
    }
    let message = match caps.name {
        "xai" if references => format!("xAI makes videos{why} at most at {best}; ask for 720p or 480p"),
        "xai" => format!(
            "xai.video_model makes at most {best}; 1080p needs grok-imagine-video-1.5 (text- or image-to-video)"
        ),
        name => format!(
            "this gateway's upstream ({name}) makes videos at most at {best}; 1080p is made only by the xai \
             upstream with grok-imagine-video-1.5"
        ),
    };
    Err(ApiError::invalid_param(param, message))
}
