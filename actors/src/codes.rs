//! Closed sets of codes kept as text in the database (statuses), as enums in the code.

/// Declares an enum whose variants are stored as the given texts: `as_str`, `FromStr` (the exact text),
/// `Display`, and `ALL` in declaration order.
#[macro_export]
macro_rules! text_codes {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|code| code.as_str() == s)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
                        format!("`{s}` is not one of {}", known.join(", "))
                    })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_codes! {
        /// A test set.
        pub enum Light {
            Red = "RED",
            Green = "GREEN",
        }
    }

    #[test]
    fn codes_round_trip_and_refuse_the_unknown() {
        for light in Light::ALL {
            assert_eq!(light.as_str().parse::<Light>(), Ok(*light));
        }
        assert_eq!(Light::Green.to_string(), "GREEN");
        let err = "green".parse::<Light>().err().unwrap_or_default();
        assert!(err.contains("RED, GREEN"), "{err}");
    }
}
