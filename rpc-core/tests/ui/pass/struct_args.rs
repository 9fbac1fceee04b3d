//! Arguments and results of user types with serde derives, standard containers, tuples and
//! arrays; a `Result` alias, which travels as a plain value; a type of the user's named `Cow`,
//! which needs no lifetime.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    x: i32,
    y: i32,
}

/// A shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// A polygon through its corners.
    Polygon(Vec<Point>),
    /// A circle.
    Circle { center: Point, radius: u32 },
}

/// Why a shape was refused.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeError {
    reason: String,
}

/// Animals, among them one named like the standard library's `Cow`.
pub mod farm {
    /// A cow of the farm: no `std::borrow::Cow`.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Cow<T> {
        pub name: T,
    }
}

/// An alias: not recognised as `Result<T, E>`, so it is a plain value.
pub type Answer = Result<u32, String>;

#[rpc_core::service]
pub trait Geometry {
    /// Moves a point.
    async fn translate(&self, point: Point, by: (i32, i32)) -> Point;
    /// Counts corners.
    async fn corners(&self, shape: Shape) -> Result<usize, ShapeError>;
    /// Builds a histogram.
    async fn histogram(&self, words: Vec<String>, filter: Option<String>) -> HashMap<String, u32>;
    /// Sums four bytes.
    async fn bytes(&self, raw: [u8; 4], label: Cow<'static, str>) -> (u32, String);
    /// An alias of `Result`.
    async fn answer(&self, ok: bool) -> Answer;
    /// A fully qualified `Result`.
    async fn qualified(&self, ok: bool) -> std::result::Result<Point, ShapeError>;
    /// The user's own `Cow`.
    async fn herd(&self, cows: Vec<farm::Cow<String>>) -> farm::Cow<u32>;
}

struct Plane;

impl Geometry for Plane {
    async fn translate(&self, point: Point, (dx, dy): (i32, i32)) -> Point {
        Point {
            x: point.x + dx,
            y: point.y + dy,
        }
    }

    async fn corners(&self, shape: Shape) -> Result<usize, ShapeError> {
        match shape {
            Shape::Polygon(points) => Ok(points.len()),
            Shape::Circle { .. } => Err(ShapeError {
                reason: "round".to_owned(),
            }),
        }
    }

    async fn histogram(&self, words: Vec<String>, filter: Option<String>) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        for word in words
            .into_iter()
            .filter(|w| filter.as_ref().map_or(true, |f| f == w))
        {
            *counts.entry(word).or_default() += 1;
        }
        counts
    }

    async fn bytes(&self, raw: [u8; 4], label: Cow<'static, str>) -> (u32, String) {
        (raw.iter().map(|&b| u32::from(b)).sum(), label.into_owned())
    }

    async fn answer(&self, ok: bool) -> Answer {
        if ok {
            Ok(42)
        } else {
            Err("no".to_owned())
        }
    }

    async fn qualified(&self, ok: bool) -> std::result::Result<Point, ShapeError> {
        if ok {
            Ok(Point { x: 1, y: 2 })
        } else {
            Err(ShapeError {
                reason: "asked".to_owned(),
            })
        }
    }

    async fn herd(&self, cows: Vec<farm::Cow<String>>) -> farm::Cow<u32> {
        farm::Cow {
            name: u32::try_from(cows.len()).unwrap_or(u32::MAX),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), rpc_core::RpcError> {
    let client: GeometryClient =
        rpc_core::memory::serve_and_connect(GeometryServer::new(Plane)).await?;
    let origin = Point { x: 0, y: 0 };
    assert_eq!(
        client.translate(origin, (2, -3)).await?,
        Point { x: 2, y: -3 }
    );
    let triangle = Shape::Polygon(vec![origin; 3]);
    assert_eq!(client.corners(triangle).await?, Ok(3));
    let circle = Shape::Circle {
        center: origin,
        radius: 1,
    };
    assert_eq!(
        client.corners(circle).await?,
        Err(ShapeError {
            reason: "round".to_owned()
        })
    );
    let words = ["a", "b", "a"].map(String::from).to_vec();
    let all = client.histogram(words.clone(), None).await?;
    assert_eq!((all["a"], all["b"]), (2, 1));
    assert_eq!(
        client.histogram(words, Some("b".to_owned())).await?.len(),
        1
    );
    assert_eq!(
        client.bytes([1, 2, 3, 4], Cow::Borrowed("sum")).await?,
        (10, "sum".to_owned())
    );
    // The alias is a plain value: the `Err` arrives as `Ok(Err(..))` like any other value.
    let answer: Answer = client.answer(false).await?;
    assert_eq!(answer, Err("no".to_owned()));
    assert_eq!(client.answer(true).await?, Ok(42));
    let qualified: Result<Point, ShapeError> = client.qualified(false).await?;
    assert!(qualified.is_err());
    let herd = vec![farm::Cow {
        name: "Daisy".to_owned(),
    }];
    assert_eq!(client.herd(herd).await?, farm::Cow { name: 1 });
    Ok(())
}
