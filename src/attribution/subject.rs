//! The one place where an image becomes a method input: predict, pick the explained class with one
//! strict rule, and hand every method (and the trust checks) the same [`ImageInput`].
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Tensor;

use super::{explain, Attribution, ExplainConfig, ImageInput, Method};
use crate::error::{Error, Result};
use crate::evaluate::argmax;
use crate::model::Classifier;
use crate::preprocess::{stack_inputs, Prepared};

/// `explain.target` (and `explain --target`) as written: which class the maps explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The model's predicted class (the notebook's choice).
    Predicted,
    /// The image's true class, from its class folder.
    Label,
    /// One class of the model, by name.
    Class(String),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Predicted => "predicted",
            Target::Label => "label",
            Target::Class(c) => c,
        }
    }

    /// The rule for a model with `classes`: a class name that is not one of them is refused here,
    /// before any work, naming the valid choices.
    pub fn resolve(&self, classes: &[String]) -> Result<TargetRule> {
        Ok(match self {
            Target::Predicted => TargetRule::Predicted,
            Target::Label => TargetRule::Label,
            Target::Class(name) => {
                TargetRule::Class(classes.iter().position(|c| c == name).ok_or_else(|| {
                    Error::key(
                        "explain.target",
                        format!(
                            "class `{name}` is not one of the model's classes {classes:?}: allowed \
                             predicted, label, {}",
                            classes.join(", ")
                        ),
                    )
                })?)
            }
        })
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Target> {
        match s {
            "predicted" => Ok(Target::Predicted),
            "label" => Ok(Target::Label),
            "" => Err(Error::key(
                "explain.target",
                "empty: allowed predicted, label, or a class name",
            )),
            name => Ok(Target::Class(name.to_string())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Target, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: Error| serde::de::Error::custom(e))
    }
}

/// A [`Target`] checked against the model's classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetRule {
    Predicted,
    Label,
    Class(usize),
}

impl TargetRule {
    /// The explained class of one image. `Label` on an image without a known class is an error,
    /// never a silent fall-back to the prediction.
    pub fn pick(self, predicted: usize, label: Option<usize>) -> Result<usize> {
        match self {
            TargetRule::Predicted => Ok(predicted),
            TargetRule::Class(c) => Ok(c),
            TargetRule::Label => label.ok_or_else(|| {
                Error::Other(
                    "target `label` needs the image's true class: put it in a folder named after \
                     one of the model's classes"
                        .into(),
                )
            }),
        }
    }
}

/// One image as the methods see it: its model input on the model's device, the model's
/// probabilities, and the class the maps explain.
pub struct Subject {
    /// 1 x C x S x S.
    pub x: Tensor,
    pub probs: Vec<f32>,
    pub predicted: usize,
    pub target: usize,
}

impl Subject {
    /// Predicts `prep` and resolves the explained class (`label` = the image's true class, if known).
    pub fn new(
        model: &dyn Classifier,
        prep: &Prepared,
        label: Option<usize>,
        rule: TargetRule,
    ) -> Result<Subject> {
        let x = stack_inputs(&[prep]).to_device(model.device());
        let probs = model.predict_probs(&x)?.remove(0);
        if probs.iter().any(|p| !p.is_finite()) {
            return Err(Error::Other(
                "the model's output for this image is NaN or infinite, so it has no prediction"
                    .into(),
            ));
        }
        let predicted = argmax(&probs);
        let target = rule.pick(predicted, label)?;
        Ok(Subject {
            x,
            probs,
            predicted,
            target,
        })
    }

    pub fn confidence(&self) -> f32 {
        self.probs[self.predicted]
    }

    /// The methods' input; `id` seeds the random draws, `grey` is the segmentation input.
    pub fn input<'a>(&'a self, id: &'a str, grey: &'a [f32]) -> ImageInput<'a> {
        ImageInput {
            id,
            x: &self.x,
            grey,
            target: self.target as i64,
            segmentation: Default::default(),
        }
    }
}

/// Every method of `methods` on one image, in order. A method that fails (or cannot run on this
/// model) is an error for that method alone; the others still run. With `explain.shared_evaluations`
/// and both LIME and Kernel SHAP listed, the two are computed together when the first is reached.
pub fn explain_image(
    model: &dyn Classifier,
    cfg: &ExplainConfig,
    methods: &[Method],
    input: &ImageInput,
) -> Vec<(Method, Result<Attribution>)> {
    let pair = cfg.shared_evaluations
        && methods.contains(&Method::Lime)
        && methods.contains(&Method::KernelShap);
    let mut shared: Option<Result<(Attribution, Attribution)>> = None;
    methods
        .iter()
        .map(|&m| {
            if pair && matches!(m, Method::Lime | Method::KernelShap) {
                let both = shared.get_or_insert_with(|| {
                    super::shared::explain_pair(model, cfg, input).and_then(|p| match p {
                        Some(p) => Ok(p),
                        None => Ok((
                            explain(model, cfg, Method::Lime, input)?,
                            explain(model, cfg, Method::KernelShap, input)?,
                        )),
                    })
                });
                let one = match both {
                    Ok((lime, shap)) => Ok(if m == Method::Lime {
                        lime.clone()
                    } else {
                        shap.clone()
                    }),
                    Err(e) => Err(Error::Other(format!(
                        "LIME and Kernel SHAP (shared evaluations): {e}"
                    ))),
                };
                return (m, one);
            }
            (m, explain(model, cfg, m, input))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["no".into(), "yes".into()]
    }

    #[test]
    fn a_class_that_does_not_exist_is_refused_naming_the_valid_ones() {
        let e = Target::Class("maybe".into())
            .resolve(&classes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("explain.target") && e.contains("maybe") && e.contains("no, yes"),
            "{e}"
        );
        assert_eq!(
            Target::Class("yes".into()).resolve(&classes()).unwrap(),
            TargetRule::Class(1)
        );
    }

    #[test]
    fn label_without_a_class_is_an_error_not_the_prediction() {
        assert!(TargetRule::Label.pick(1, None).is_err());
        assert_eq!(TargetRule::Label.pick(1, Some(0)).unwrap(), 0);
        assert_eq!(TargetRule::Predicted.pick(1, Some(0)).unwrap(), 1);
        assert_eq!(TargetRule::Class(0).pick(1, Some(1)).unwrap(), 0);
    }

    #[test]
    fn target_round_trips_as_the_config_string() {
        for s in ["predicted", "label", "glioma"] {
            let t: Target = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
            let y = serde_yaml_ng::to_string(&t).unwrap();
            assert_eq!(serde_yaml_ng::from_str::<Target>(&y).unwrap(), t);
        }
        assert!("".parse::<Target>().is_err());
    }
}
